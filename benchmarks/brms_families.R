# brms's side of `benchmarks/nuts.py --families`, timed: each family of tests/data/make_family_brms_refs.R
# (same data, formula and priors), 4 chains x 1,000 draws (1,000 warm-up), cores = 2, Stan's compile
# included in the total. Writes benchmarks/results/brms_families_speed.json.
# Run from the repository root:  Rscript benchmarks/brms_families.R
suppressPackageStartupMessages({library(brms); library(posterior); library(jsonlite)})
dat <- "tests/data"
rows <- list()
for (fam in c("negbinomial", "cumulative", "beta", "student")) {
  ref <- fromJSON(file.path(dat, sprintf("brms_family_%s.json", fam)), simplifyVector = FALSE)
  cc <- switch(fam, negbinomial = c(Trt = "factor", patient = "factor", visit = "factor"),
               cumulative = c(temp = "factor", contact = "factor", judge = "factor"), c(g = "factor"))
  d <- read.csv(file.path(dat, ref$data), colClasses = cc)
  family <- switch(fam, negbinomial = negbinomial(), cumulative = cumulative("logit"), beta = Beta(),
                   student = student())
  pri <- do.call(c, lapply(names(ref$priors), function(cl) set_prior(ref$priors[[cl]], class = cl)))
  load <- as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3])
  t0 <- proc.time()[["elapsed"]]
  fit <- brm(bf(as.formula(ref$formula), center = FALSE), data = d, family = family, prior = pri, chains = 4,
             iter = 2000, warmup = 1000, cores = 2, seed = 1, refresh = 0, silent = 2)
  total <- proc.time()[["elapsed"]] - t0
  dr <- as_draws_df(fit)
  keep <- grep("^(b_|sd_|shape$|phi$|nu$|sigma$)", variables(dr), value = TRUE)
  s <- summarise_draws(subset_draws(dr, variable = keep), "rhat", "ess_bulk", "ess_tail")
  el <- rstan::get_elapsed_time(fit$fit)
  np <- nuts_params(fit)
  rows[[fam]] <- list(family = fam, chain_s = unname(rowSums(el)), sampling_s_over_2_workers = sum(el) / 2,
                      total_s = total, min_ess_bulk = min(s$ess_bulk), min_ess_bulk_at = s$variable[which.min(s$ess_bulk)],
                      min_ess_tail = min(s$ess_tail), min_ess_tail_at = s$variable[which.min(s$ess_tail)],
                      max_r_hat = max(s$rhat), divergences = sum(np$Value[np$Parameter == "divergent__"]),
                      load_at_start = load, load_at_end = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3]))
  cat(fam, total, "s\n")
}
out <- list(when = format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), draws = 1000, warmup = 1000, chains = 4,
            cores = 2, versions = list(brms = as.character(packageVersion("brms")),
                                       rstan = as.character(packageVersion("rstan"))), rows = rows)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "benchmarks/results/brms_families_speed.json")
