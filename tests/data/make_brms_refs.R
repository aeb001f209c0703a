# Posterior references for tests/test_engine_posterior.py: brms (Stan NUTS) fits with explicit priors.
# Run from tests/data: Rscript make_brms_refs.R   (needs r-cran-brms, r-cran-lme4, r-cran-jsonlite;
# brms needs `ln -s /usr/include /usr/lib/R/site-library/BH/include` on Debian).
suppressPackageStartupMessages({library(brms); library(lme4); library(posterior); library(jsonlite)})

summarise <- function(fit) {
  dr <- as_draws_df(fit)
  keep <- grep("^(b_|sd_|cor_|sigma$)", variables(dr), value = TRUE)
  s <- summarise_draws(subset_draws(dr, variable = keep),
                       mean, sd, ~quantile(.x, probs = c(0.05, 0.5, 0.95)), mcse_mean, ess_bulk, rhat)
  lapply(seq_len(nrow(s)), function(i) as.list(s[i, ]))
}

only <- commandArgs(trailingOnly = TRUE)  # ids to (re)make; all when empty

run <- function(id, data_file, formula, data, fixed, scales, corr = NULL, iter = 6000, adapt_delta = 0.95,
                family = gaussian()) {
  if (length(only) && !(id %in% only)) return(invisible())
  pri <- c(set_prior(sprintf("normal(0, %s)", fixed[2]), class = "b"),
           set_prior(sprintf("cauchy(0, %s)", scales), class = "sd"))
  if (family$family == "gaussian") pri <- c(pri, set_prior(sprintf("cauchy(0, %s)", scales), class = "sigma"))
  if (!is.null(corr)) pri <- c(pri, set_prior("lkj(2)", class = "cor"))
  t0 <- proc.time()[["elapsed"]]
  fit <- brm(as.formula(formula), data = data, family = family, prior = pri, chains = 4, iter = iter, warmup = 1000,
             cores = 1, seed = 20261122, refresh = 0, control = list(adapt_delta = adapt_delta))
  ndiv <- sum(nuts_params(fit)$Value[nuts_params(fit)$Parameter == "divergent__"])
  secs <- proc.time()[["elapsed"]] - t0
  out <- list(id = id, data = data_file, formula = formula, family = family$family, link = family$link,
              priors = list(fixed = sprintf("Normal(%s, %s)", fixed[1], fixed[2]),
                            scales = sprintf("HalfCauchy(%s)", scales), corr = corr),
              brms_version = as.character(packageVersion("brms")), seconds = secs,
              draws = 4 * (iter - 1000), divergences = ndiv, adapt_delta = adapt_delta, summary = summarise(fit))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE), sprintf("brms_%s.json", id))
}

run("pastes", "pastes.csv", "strength ~ 0 + Intercept + (1 | batch/cask)",
    read.csv("pastes.csv", stringsAsFactors = TRUE), c(0, 100), 5, iter = 26000, adapt_delta = 0.99)
# sd(sample) has 6 levels and a heavy right tail: its posterior SD needs many draws
run("penicillin", "penicillin.csv", "diameter ~ 0 + Intercept + (1 | plate) + (1 | sample)",
    read.csv("penicillin.csv", stringsAsFactors = TRUE), c(0, 100), 5, iter = 26000, adapt_delta = 0.99)

# A simulated subjects x items design: correlated random intercepts and slopes on both factors.
set.seed(20261122)
ns <- 30; ni <- 20
d <- expand.grid(subj = sprintf("s%02d", 1:ns), item = sprintf("i%02d", 1:ni))
d$x <- ifelse(runif(nrow(d)) < 0.5, -0.5, 0.5)
ms <- MASS::mvrnorm(ns, c(0, 0), matrix(c(1, 0.3 * 1 * 0.5, 0.3 * 1 * 0.5, 0.25), 2))
mi <- MASS::mvrnorm(ni, c(0, 0), matrix(c(0.64, -0.4 * 0.8 * 0.4, -0.4 * 0.8 * 0.4, 0.16), 2))
si <- as.integer(d$subj); ii <- as.integer(d$item)
d$y <- round(2 + 0.5 * d$x + ms[si, 1] + ms[si, 2] * d$x + mi[ii, 1] + mi[ii, 2] * d$x + rnorm(nrow(d), 0, 1), 4)
write.csv(d[, c("y", "x", "subj", "item")], "subjitems.csv", row.names = FALSE)
run("subjitems", "subjitems.csv", "y ~ 0 + Intercept + x + (1 + x | subj) + (1 + x | item)",
    read.csv("subjitems.csv", stringsAsFactors = TRUE), c(0, 10), 2, corr = "LKJ(2)")

# GLMMs (issue 12): binomial with trials (lme4's cbind(incidence, size - incidence)) and a Poisson random slope.
# herd and period are codes: factors, as in lme4's cbpp
run("cbpp", "glmer_cbpp.csv", "incidence | trials(size) ~ 0 + Intercept + period + (1 | herd)",
    read.csv("glmer_cbpp.csv", colClasses = c(herd = "factor", period = "factor")), c(0, 2.5), 1,
    family = binomial())
run("poisson_slope", "glmer_poisson_sim.csv", "y ~ 0 + Intercept + x + (1 + x | g)",
    read.csv("glmer_poisson_sim.csv", stringsAsFactors = TRUE), c(0, 2.5), 1, corr = "LKJ(2)", family = poisson())
