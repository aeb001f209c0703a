# References for tests/test_families.py: point fits of the response families by
# glmmTMB (Laplace), ordinal::clmm (Laplace) and lme4::lmer (lognormal), one JSON
# per fit in tests/data/ (family_<name>.json) with its data as CSV beside it (named
# in the JSON's "data"; fits of one data set share its CSV).
# Run from the repository root:  Rscript tests/data/make_family_refs.R
suppressPackageStartupMessages({
  library(glmmTMB); library(ordinal); library(lme4); library(jsonlite)
})
out <- "tests/data"
versions <- list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                 TMB = as.character(packageVersion("TMB")), ordinal = as.character(packageVersion("ordinal")),
                 lme4 = as.character(packageVersion("lme4")), brms = as.character(packageVersion("brms")))

timed <- function(expr_fun, reps = 3) {
  ts <- sapply(seq_len(reps), function(i) system.time(expr_fun())[["elapsed"]])
  list(fit = expr_fun(), seconds = median(ts))
}

factor_levels <- function(d) {
  f <- Filter(is.factor, d)
  lapply(f, function(x) list(levels = levels(x), ordered = is.ordered(x)))
}

write_ref <- function(name, d, formula, call, ref, seconds, data_name = name) {
  csv <- paste0("family_", data_name, ".csv")
  write.csv(d, file.path(out, csv), row.names = FALSE)
  ref$name <- name; ref$formula <- formula; ref$call <- call; ref$data <- csv
  ref$factors <- factor_levels(d); ref$seconds <- seconds; ref$versions <- versions
  ref$load <- as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1])
  writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, paste0("family_", name, ".json")))
  cat(name, "done in", seconds, "s\n")
}

tmb_ref <- function(fit, dpars) {
  vc <- VarCorr(fit)$cond
  sds <- lapply(vc, function(m) as.list(attr(m, "stddev")))
  list(fixef = as.list(fixef(fit)$cond), se = as.list(sqrt(diag(vcov(fit)$cond))), sd = sds,
       dpars = dpars, loglik = as.numeric(logLik(fit)), aic = AIC(fit), nobs = nobs(fit),
       converged = fit$fit$convergence == 0, pdHess = fit$sdr$pdHess)
}

tmb <- function(name, d, formula, family, zi = ~0, dpars_fun, call, data_name = name) {
  r <- timed(function() glmmTMB(as.formula(formula), data = d, family = family, ziformula = zi))
  write_ref(name, d, formula, call, tmb_ref(r$fit, dpars_fun(r$fit)), r$seconds, data_name)
}

# negative binomial: brms's epilepsy
data("epilepsy", package = "brms")
ep <- epilepsy[, c("count", "zAge", "zBase", "Base", "Trt", "patient", "visit")]
tmb("negbinomial", ep, "count ~ zAge + zBase * Trt + (1 | patient)", nbinom2,
    dpars_fun = function(f) list(shape = sigma(f)),
    call = "glmmTMB(count ~ zAge + zBase * Trt + (1 | patient), data = brms::epilepsy, family = nbinom2)", data_name = "epilepsy")

# negative binomial at the boundary: no group variation (numpy's default_rng(0), 10 groups of 10;
# the CSV is the data's source); glmmTMB's SD runs to ~1e-4, bayesmer's is 0
sg <- read.csv(file.path(out, "family_negbinomial_singular.csv")); sg$g <- factor(sg$g)
tmb("negbinomial_singular", sg, "y ~ x + (1 | g)", nbinom2, dpars_fun = function(f) list(shape = sigma(f)),
    call = "glmmTMB(y ~ x + (1 | g), data = <numpy default_rng(0)>, family = nbinom2)")

# negative binomial with an offset in the formula
tmb("negbinomial_offset", ep, "count ~ zAge + Trt + offset(log(Base)) + (1 | patient)", nbinom2,
    dpars_fun = function(f) list(shape = sigma(f)),
    call = "glmmTMB(count ~ zAge + Trt + offset(log(Base)) + (1 | patient), data = brms::epilepsy, family = nbinom2)", data_name = "epilepsy")

# Student-t: glmmTMB's t_family, which failed on sleepstudy with outliers (NaN Hessian, see
# round3-notes), fits this simulated set (numpy default_rng(11): 20 groups of 10, 0.5 * t_4 noise;
# the CSV is the data's source)
st <- read.csv(file.path(out, "family_student.csv")); st$g <- factor(st$g)
tmb("student", st, "y ~ 1 + (1 | g)", t_family,
    dpars_fun = function(f) list(sigma = sigma(f), nu = unname(family_params(f)[[1]])),
    call = "glmmTMB(y ~ 1 + (1 | g), data = <numpy default_rng(11)>, family = t_family)")

# zero-inflated Poisson: glmmTMB's Salamanders
data("Salamanders", package = "glmmTMB")
sal <- Salamanders[, c("count", "mined", "site", "spp")]
tmb("zero_inflated_poisson", sal, "count ~ mined + (1 | site)", poisson, zi = ~1,
    dpars_fun = function(f) list(zi = plogis(fixef(f)$zi[[1]]), zi_logit = fixef(f)$zi[[1]],
                                 zi_logit_se = sqrt(vcov(f)$zi[1, 1])),
    call = "glmmTMB(count ~ mined + (1 | site), ziformula = ~1, data = Salamanders, family = poisson)", data_name = "salamanders")

# negative binomial with crossed random intercepts: Salamanders
tmb("negbinomial_crossed", sal, "count ~ mined + (1 | site) + (1 | spp)", nbinom2,
    dpars_fun = function(f) list(shape = sigma(f)),
    call = "glmmTMB(count ~ mined + (1 | site) + (1 | spp), data = Salamanders, family = nbinom2)", data_name = "salamanders")

# zero-inflated negative binomial: Salamanders again
tmb("zero_inflated_negbinomial", sal, "count ~ mined + (1 | site)", nbinom2, zi = ~1,
    dpars_fun = function(f) list(shape = sigma(f), zi = plogis(fixef(f)$zi[[1]])),
    call = "glmmTMB(count ~ mined + (1 | site), ziformula = ~1, data = Salamanders, family = nbinom2)", data_name = "salamanders")

# Gamma (log link): simulated, 40 groups of 6
set.seed(20261203)
g <- factor(rep(sprintf("g%02d", 1:40), each = 6)); x <- rnorm(240); b <- rnorm(40, sd = 0.4)
mu <- exp(1 + 0.3 * x + b[as.integer(g)])
gam <- data.frame(y = rgamma(240, shape = 3, rate = 3 / mu), x = x, g = g)
tmb("Gamma", gam, "y ~ x + (1 | g)", Gamma(link = "log"),
    dpars_fun = function(f) list(shape = 1 / sigma(f)^2, sigma_cv = sigma(f)),
    call = "glmmTMB(y ~ x + (1 | g), data = <simulated, seed 20261203>, family = Gamma(link = 'log'))", data_name = "gamma_sim")

# Gamma with the inverse link (R's, brms's and bambi's default), same data
# (glmmTMB's default start, beta = 0, is mu = Inf here: started at the intercept 1 / mean(y))
r <- timed(function() glmmTMB(y ~ x + (1 | g), data = gam, family = Gamma(link = "inverse"),
                              start = list(beta = c(1 / mean(gam$y), 0))))
write_ref("Gamma_inverse", gam, "y ~ x + (1 | g)",
          "glmmTMB(y ~ x + (1 | g), data = <simulated, seed 20261203>, family = Gamma(link = 'inverse'), start = list(beta = c(1 / mean(y), 0)))",
          tmb_ref(r$fit, list(shape = 1 / sigma(r$fit)^2)), r$seconds, data_name = "gamma_sim")

# Gamma with a correlated random slope: simulated, 40 groups of 8
set.seed(20261205)
g <- factor(rep(sprintf("g%02d", 1:40), each = 8)); x <- rnorm(320)
b0 <- rnorm(40, sd = 0.4); b1 <- 0.3 * b0 / 0.4 * 0.25 + sqrt(1 - 0.3^2) * rnorm(40, sd = 0.25)
mu <- exp(1 + 0.3 * x + b0[as.integer(g)] + b1[as.integer(g)] * x)
gsl <- data.frame(y = rgamma(320, shape = 4, rate = 4 / mu), x = x, g = g)
r <- timed(function() glmmTMB(y ~ x + (x | g), data = gsl, family = Gamma(link = "log")))
ref <- tmb_ref(r$fit, list(shape = 1 / sigma(r$fit)^2))
ref$corr <- attr(VarCorr(r$fit)$cond$g, "correlation")[1, 2]
write_ref("Gamma_slope", gsl, "y ~ x + (x | g)",
          "glmmTMB(y ~ x + (x | g), data = <simulated, seed 20261205>, family = Gamma(link = 'log'))", ref, r$seconds)

# beta (logit link): simulated, 30 groups of 8
set.seed(20261204)
g <- factor(rep(sprintf("s%02d", 1:30), each = 8)); x <- rnorm(240); b <- rnorm(30, sd = 0.5)
mu <- plogis(-0.5 + 0.6 * x + b[as.integer(g)]); phi <- 12
bet <- data.frame(y = rbeta(240, mu * phi, (1 - mu) * phi), x = x, g = g)
tmb("beta", bet, "y ~ x + (1 | g)", beta_family(),
    dpars_fun = function(f) list(phi = sigma(f)),
    call = "glmmTMB(y ~ x + (1 | g), data = <simulated, seed 20261204>, family = beta_family())")

# lognormal: lmer(log(Reaction), REML = FALSE) on sleepstudy; logLik on the y scale
data("sleepstudy", package = "lme4")
# sigma's SE as glmmTMB gives it: its Gaussian fit of log(y), the inverse Hessian's variance of its
# dispersion parameter (log sigma^2 in glmmTMB 1.1.5, log sigma in later versions), delta method
lognormal_sigma_se <- function(reml) {
  g <- glmmTMB(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = reml)
  per_log_sigma <- if (abs(fixef(g)$disp[[1]] - 2 * log(sigma(g))) < 1e-6) 2 else 1
  sigma(g) * sqrt(vcov(g, full = TRUE)["d~(Intercept)", "d~(Intercept)"]) / per_log_sigma
}
r <- timed(function() lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE))
fit <- r$fit
vc <- VarCorr(fit)$Subject
ref <- list(fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
            sd = list(Subject = as.list(attr(vc, "stddev"))), corr = attr(vc, "correlation")[1, 2],
            dpars = list(sigma = sigma(fit)), dpars_se = list(sigma = lognormal_sigma_se(FALSE)),
            loglik = as.numeric(logLik(fit)) - sum(log(sleepstudy$Reaction)),
            loglik_log_scale = as.numeric(logLik(fit)), nobs = nobs(fit))
ref$aic <- -2 * ref$loglik + 2 * 6
write_ref("lognormal", sleepstudy, "Reaction ~ Days + (Days | Subject)",
          "lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)", ref, r$seconds, data_name = "sleepstudy")

# lognormal by REML: lmer(log(Reaction), REML = TRUE) (no log-likelihood compared)
r <- timed(function() lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = TRUE))
fit <- r$fit
vc <- VarCorr(fit)$Subject
ref <- list(fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
            sd = list(Subject = as.list(attr(vc, "stddev"))), corr = attr(vc, "correlation")[1, 2],
            dpars = list(sigma = sigma(fit)), dpars_se = list(sigma = lognormal_sigma_se(TRUE)),
            reml_criterion_log_scale = REMLcrit(fit), nobs = nobs(fit))
write_ref("lognormal_reml", sleepstudy, "Reaction ~ Days + (Days | Subject)",
          "lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = TRUE)", ref, r$seconds, data_name = "sleepstudy")

# cumulative: ordinal's wine with clmm (Laplace, logit)
data("wine", package = "ordinal")
wi <- wine[, c("rating", "temp", "contact", "judge", "bottle")]
# clmm's defaults (Laplace, gradTol = 1e-4). A tighter gradTol (1e-8) moves the estimates by < 1e-5
# relative but its inner updates of the random effects then hit their iteration limit ("iteration
# limit reached when updating the random effects") and its SEs move by ~1%: the default is the reference.
ctrl <- clmm.control()
r <- timed(function() clmm(rating ~ temp + contact + (1 | judge), data = wi, control = ctrl))
fit <- r$fit
V <- vcov(fit); se <- sqrt(diag(V))
nth <- length(fit$alpha)
ref <- list(fixef = as.list(fit$beta), se = as.list(se[names(fit$beta)]),
            thresholds = as.list(fit$alpha), thresholds_se = as.list(se[names(fit$alpha)]),
            dpars = setNames(as.list(unname(fit$alpha)), sprintf("Intercept[%d]", seq_len(nth))),
            sd = list(judge = list(`(Intercept)` = unname(fit$ST$judge[1, 1]))),
            loglik = as.numeric(logLik(fit)), aic = AIC(fit), nobs = nrow(wi),
            maxGradient = max(abs(fit$gradient)), gradTol = ctrl$gradTol)
write_ref("cumulative", wi, "rating ~ temp + contact + (1 | judge)",
          "clmm(rating ~ temp + contact + (1 | judge), data = wine)", ref, r$seconds, data_name = "wine")

# cumulative with the probit link
r <- timed(function() clmm(rating ~ temp + contact + (1 | judge), data = wi, link = "probit"))
fit <- r$fit
se <- sqrt(diag(vcov(fit)))
ref <- list(fixef = as.list(fit$beta), se = as.list(se[names(fit$beta)]),
            thresholds = as.list(fit$alpha), thresholds_se = as.list(se[names(fit$alpha)]),
            dpars = setNames(as.list(unname(fit$alpha)), sprintf("Intercept[%d]", seq_along(fit$alpha))),
            sd = list(judge = list(`(Intercept)` = unname(fit$ST$judge[1, 1]))),
            loglik = as.numeric(logLik(fit)), aic = AIC(fit), nobs = nrow(wi))
write_ref("cumulative_probit", wine[, c("rating", "temp", "contact", "judge", "bottle")],
          "rating ~ temp + contact + (1 | judge)",
          "clmm(rating ~ temp + contact + (1 | judge), data = wine, link = 'probit')", ref, r$seconds, data_name = "wine")

