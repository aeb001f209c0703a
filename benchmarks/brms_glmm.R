# brms's side of `benchmarks/nuts.py --glmm`: one model, one brm() fit, figures to a JSON file.
#   Rscript benchmarks/brms_glmm.R SPEC.json OUT.json
# SPEC: csv, col_classes (named), formula, family ("binomial" or "bernoulli"), yes_col (optional: a
# "N"/"Y" column recoded 0/1 in place), priors [{prior, class, coef or group}], chains, iter, warmup, cores, seed.
# The Python side times the whole Rscript process; here the brm() call and Stan's own chain times.
t_start <- proc.time()[["elapsed"]]
suppressPackageStartupMessages({
  library(brms)
  library(jsonlite)
  library(posterior)
})
args <- commandArgs(trailingOnly = TRUE)
spec <- fromJSON(args[[1]], simplifyVector = FALSE)
cc <- unlist(spec$col_classes)
d <- read.csv(spec$csv, colClasses = cc)
for (f in names(cc)) if (cc[[f]] == "character") d[[f]] <- factor(d[[f]])
if (!is.null(spec$yes_col)) d[[spec$yes_col]] <- as.integer(d[[spec$yes_col]] == "Y")
pr <- do.call(c, lapply(spec$priors, function(p) do.call(set_prior, p)))  # prior, class, coef or group
fam <- switch(spec$family, binomial = binomial(), bernoulli = bernoulli())
t_loaded <- proc.time()[["elapsed"]]
fit <- brm(as.formula(spec$formula), data = d, family = fam, prior = pr, chains = spec$chains,
           iter = spec$iter, warmup = spec$warmup, cores = spec$cores, seed = spec$seed, refresh = 0,
           silent = 2)
t_fit <- proc.time()[["elapsed"]]
dr <- as_draws_array(fit)
keep <- grep("^(b_|sd_|cor_)", variables(dr), value = TRUE)
s <- summarise_draws(subset_draws(dr, variable = keep), "rhat", "ess_bulk", "ess_tail")
el <- rstan::get_elapsed_time(fit$fit)  # per chain: warmup, sample (seconds)
np <- nuts_params(fit)
div <- sum(np$Value[np$Parameter == "divergent__"])
out <- list(
  load_s = t_loaded - t_start, brm_s = t_fit - t_loaded,
  chain_s = unname(rowSums(el)), warmup_s = unname(el[, "warmup"]), sample_s = unname(el[, "sample"]),
  min_ess_bulk = min(s$ess_bulk), min_ess_bulk_at = s$variable[which.min(s$ess_bulk)],
  min_ess_tail = min(s$ess_tail), min_ess_tail_at = s$variable[which.min(s$ess_tail)],
  max_r_hat = max(s$rhat), divergences = div, n_hyper = nrow(s), variables = s$variable,
  prior = capture.output(print(prior_summary(fit))),
  versions = list(brms = as.character(packageVersion("brms")), rstan = as.character(packageVersion("rstan")),
                  R = R.version.string)
)
write(toJSON(out, auto_unbox = TRUE, digits = NA), args[[2]])
