# Posterior references for tests/test_family_brms.py (issue 17): brms (Stan NUTS) fits of the
# response families with every prior stated, so that bayesmer can be given the same ones.
# One JSON per family, tests/data/brms_family_<family>.json, data from the CSVs beside it.
# Run from the repository root:  Rscript tests/data/make_family_brms_refs.R [family ...]
# (needs r-cran-brms, r-cran-posterior, r-cran-jsonlite; brms needs
#  `ln -s /usr/include /usr/lib/R/site-library/BH/include` on Debian).
#
# Priors (brms class -> prior; bayesmer is given the same strings):
#   b (every fixed effect, the intercept included: `center = FALSE`, so that the prior is on the
#   raw-scale intercept, not brms's centred one)            normal(0, 5)
#   sd (every group-level SD, half)                          student_t(3, 0, 2.5)
#   Intercept (cumulative's thresholds, raw scale, ordered)  student_t(3, 0, 2.5)   (brms's default)
#   shape (negbinomial), phi (beta)                          gamma(0.01, 0.01)      (brms's default)
#   nu (student, nu >= 1)                                    gamma(2, 0.1)          (brms's default)
#   sigma (student, half)                                    student_t(3, 0, 2.5)
# 4 chains x 2,500 post-warmup draws (1,000 warmup), cores = 1, seed 20261203, adapt_delta 0.8
# (Stan's default; raised to 0.99 and refitted only if a chain diverged).
suppressPackageStartupMessages({library(brms); library(posterior); library(jsonlite)})
out <- "tests/data"
only <- commandArgs(trailingOnly = TRUE)

PRIORS <- list(b = "normal(0, 5)", sd = "student_t(3, 0, 2.5)", Intercept = "student_t(3, 0, 2.5)",
               shape = "gamma(0.01, 0.01)", phi = "gamma(0.01, 0.01)", nu = "gamma(2, 0.1)",
               sigma = "student_t(3, 0, 2.5)")

# brms's name -> bayesmer's: [kind, group, name] as bayesmer's summary() rows name them
# (kind: fixed, sd, dpar, threshold)
bayesmer_key <- function(v) {
  lme4 <- function(x) if (x == "Intercept") "(Intercept)" else x
  if (grepl("^b_Intercept\\[", v)) return(c("threshold", "", sub("^b_", "", v)))
  if (grepl("^b_", v)) return(c("fixed", "", lme4(sub("^b_", "", v))))
  if (grepl("^sd_", v)) {
    p <- strsplit(sub("^sd_", "", v), "__", fixed = TRUE)[[1]]
    return(c("sd", p[1], lme4(p[2])))
  }
  c("dpar", "", v)
}

summarise <- function(fit) {
  dr <- as_draws_df(fit)
  keep <- grep("^(b_|sd_|shape$|phi$|nu$|sigma$)", variables(dr), value = TRUE)
  s <- summarise_draws(subset_draws(dr, variable = keep),
                       mean, sd, ~quantile(.x, probs = c(0.05, 0.25, 0.5, 0.75, 0.95)),
                       mcse_mean, mcse_sd, ~mcse_quantile(.x, probs = c(0.05, 0.5, 0.95)),
                       ess_bulk, ess_tail, rhat)
  lapply(seq_len(nrow(s)), function(i) {
    r <- as.list(s[i, ])
    names(r) <- sub("%", "", names(r), fixed = TRUE)
    r$bayesmer <- bayesmer_key(r$variable)
    r
  })
}

run <- function(family_name, data_file, formula, data, family, classes, note = "") {
  if (length(only) && !(family_name %in% only)) return(invisible())
  pri <- do.call(c, lapply(classes, function(cl) set_prior(PRIORS[[cl]], class = cl)))
  fit_once <- function(adapt_delta) {
    t0 <- proc.time()[["elapsed"]]
    fit <- brm(bf(as.formula(formula), center = FALSE), data = data, family = family, prior = pri,
               chains = 4, iter = 3500, warmup = 1000, cores = 1, seed = 20261203, refresh = 0,
               control = list(adapt_delta = adapt_delta))
    list(fit = fit, total = proc.time()[["elapsed"]] - t0)
  }
  adapt_delta <- 0.8
  r <- fit_once(adapt_delta)
  ndiv <- function(fit) sum(subset(nuts_params(fit), Parameter == "divergent__")$Value)
  if (ndiv(r$fit) > 0) {
    adapt_delta <- 0.99
    r <- fit_once(adapt_delta)
  }
  fit <- r$fit
  el <- rstan::get_elapsed_time(fit$fit)
  s <- summarise(fit)
  ess <- sapply(s, function(x) x$ess_bulk)
  res <- list(
    family = family_name, link = family$link, data = data_file, formula = formula,
    brms_formula = sprintf("bf(%s, center = FALSE)", formula),
    priors = PRIORS[classes], note = note,
    chains = 4, warmup = 1000, draws_per_chain = 2500, seed = 20261203, adapt_delta = adapt_delta,
    divergences = ndiv(fit), max_treedepth_hits = sum(subset(nuts_params(fit), Parameter == "treedepth__")$Value >= 10),
    seconds = list(warmup = sum(el[, "warmup"]), sampling = sum(el[, "sample"]),
                   warmup_and_sampling = sum(el), total_with_compile = r$total),
    min_ess_bulk = min(ess), min_ess_per_second = min(ess) / sum(el),
    load = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3]),
    versions = list(R = R.version.string, brms = as.character(packageVersion("brms")),
                    rstan = as.character(packageVersion("rstan")),
                    posterior = as.character(packageVersion("posterior"))),
    summary = s)
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(out, sprintf("brms_family_%s.json", family_name)))
  cat(family_name, ": ", sum(el), " s sampling, ", r$total, " s with compile, ", ndiv(fit), " divergences\n", sep = "")
}

ep <- read.csv(file.path(out, "family_epilepsy.csv"), colClasses = c(Trt = "factor", patient = "factor", visit = "factor"))
run("negbinomial", "family_epilepsy.csv", "count ~ zAge + zBase * Trt + (1 | patient)", ep, negbinomial(),
    c("b", "sd", "shape"))

# ordinal's wine: rating 1..5 (integers: brms's categories 1..5), temp cold/warm, contact no/yes
wine <- read.csv(file.path(out, "family_wine.csv"), colClasses = c(temp = "factor", contact = "factor", judge = "factor"))
run("cumulative", "family_wine.csv", "rating ~ temp + contact + (1 | judge)", wine, cumulative("logit"),
    c("b", "Intercept", "sd"), note = "thresholds b_Intercept[k] of P(Y <= k) = logistic(Intercept[k] - eta); no intercept in eta")

bet <- read.csv(file.path(out, "family_beta.csv"), colClasses = c(g = "factor"))
run("beta", "family_beta.csv", "y ~ x + (1 | g)", bet, Beta(), c("b", "sd", "phi"))

st <- read.csv(file.path(out, "family_student.csv"), colClasses = c(g = "factor"))
run("student", "family_student.csv", "y ~ 1 + (1 | g)", st, student(), c("b", "sd", "sigma", "nu"),
    note = "nu has brms's lower bound 1: gamma(2, 0.1) truncated to nu >= 1")
