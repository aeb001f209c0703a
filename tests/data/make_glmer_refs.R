# Reference fits for tests/test_glmer.py: lme4's glmer (Laplace, nAGQ = 1).
#
# Run from the repository root:  Rscript tests/data/make_glmer_refs.R
# Writes the data sets (glmer_*.csv) and one JSON file of lme4's results per
# model (glmer_*.json) into tests/data. Needs r-cran-lme4 and r-cran-jsonlite.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
out <- "tests/data"

write_data <- function(df, name) {
  write.csv(df, file.path(out, paste0("glmer_", name, ".csv")), row.names = FALSE)
}

# Everything the tests compare, at full precision.
describe <- function(fit, formula, family, link, data_file, extra = list()) {
  vc <- as.data.frame(VarCorr(fit))
  re <- ranef(fit)
  ic <- AIC(fit)
  t0 <- proc.time()
  res <- list(
    lme4_version = as.character(packageVersion("lme4")),
    R_version = R.version.string,
    formula = formula,
    family = family,
    link = link,
    data = data_file,
    nobs = nobs(fit),
    fixef = as.list(fixef(fit)),
    se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
    vcov = unname(as.matrix(vcov(fit))),
    theta = unname(getME(fit, "theta")),
    theta_names = names(getME(fit, "theta")),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      grp = vc$grp[i], var1 = vc$var1[i], var2 = if (is.na(vc$var2[i])) "" else vc$var2[i],
      vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    minus2loglik = -2 * as.numeric(logLik(fit)),
    loglik = as.numeric(logLik(fit)),
    deviance = deviance(fit),
    aic = AIC(fit),
    bic = BIC(fit),
    df_resid = df.residual(fit),
    ranef = lapply(re, function(d) list(levels = rownames(d), columns = colnames(d),
                                        values = unname(as.matrix(d)))),
    hessian = unname(fit@optinfo$derivs$Hessian),
    gradient = unname(fit@optinfo$derivs$gradient),
    singular = isSingular(fit),
    messages = fit@optinfo$conv$lme4$messages,
    summary = capture.output(print(summary(fit)))
  )
  # lme4's own Laplace deviance function, evaluated at lme4's optimum and
  # at two nearby points: tests the objective apart from the optimiser.
  dd <- update(fit, devFunOnly = TRUE)
  par <- c(getME(fit, "theta"), fixef(fit))
  probes <- list(par, par * 1.05 + 0.01, par * 0.9 - 0.02)
  res$devfun_points <- lapply(probes, function(p) unname(p))
  res$devfun_values <- sapply(probes, function(p) dd(p))
  # The same model with a tight optimiser: how far lme4's default optimum is
  # from the exact one (the default Nelder-Mead stops on FtolAbs = 1e-5).
  tight <- update(fit, control = glmerControl(optimizer = c("bobyqa", "nloptwrap"),
    optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5)))
  res$tight <- list(
    fixef = as.list(fixef(tight)),
    se = as.list(sqrt(diag(as.matrix(vcov(tight))))),
    theta = unname(getME(tight, "theta")),
    minus2loglik = -2 * as.numeric(logLik(tight)),
    deviance = deviance(tight))
  c(res, extra)
}

timed <- function(expr_fun, reps = 5) {
  times <- replicate(reps, system.time(expr_fun())[["elapsed"]])
  median(times)
}

save_ref <- function(res, name, fitfun) {
  res$lme4_seconds_median5 <- timed(fitfun)
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(out, paste0("glmer_", name, ".json")))
  cat(name, ": done\n")
}

# cbpp: binomial, cbind and proportion-with-weights forms, and other links.
data(cbpp)
write_data(cbpp, "cbpp")
f1 <- function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
save_ref(describe(f1(), "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "logit",
                  "glmer_cbpp.csv"), "cbpp_cbind", f1)
f2 <- function() glmer(incidence / size ~ period + (1 | herd), cbpp, binomial, weights = size)
save_ref(describe(f2(), "incidence / size ~ period + (1 | herd)", "binomial", "logit", "glmer_cbpp.csv",
                  list(weights = "size")), "cbpp_weights", f2)
f3 <- function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
                       binomial(link = "probit"))
save_ref(describe(f3(), "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "probit",
                  "glmer_cbpp.csv"), "cbpp_probit", f3)
f4 <- function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
                       binomial(link = "cloglog"))
save_ref(describe(f4(), "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "cloglog",
                  "glmer_cbpp.csv"), "cbpp_cloglog", f4)

# grouseticks: Poisson, three grouping factors (INDEX is one level per row).
data(grouseticks)
gt <- grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")]
gt$sHEIGHT <- as.numeric(scale(gt$HEIGHT))
write_data(gt, "grouseticks")
f5 <- function() glmer(TICKS ~ YEAR + sHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), gt, poisson)
save_ref(describe(f5(), "TICKS ~ YEAR + sHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson",
                  "log", "glmer_grouseticks.csv"), "grouseticks", f5)

# VerbAgg: binary (two-level factor r2), crossed id x item, 7,584 rows.
data(VerbAgg)
va <- VerbAgg[, c("Anger", "Gender", "item", "id", "btype", "situ", "r2")]
write_data(va, "verbagg")
f6 <- function() glmer(r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item), va, binomial)
save_ref(describe(f6(), "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)", "binomial",
                  "logit", "glmer_verbagg.csv"), "verbagg", f6)

# Simulated Poisson counts: a correlated random slope, and a rate with an offset.
set.seed(20261122)
G <- 40; m <- 15
g <- factor(rep(sprintf("g%02d", 1:G), each = m))
x <- runif(G * m, -1, 1)
L <- t(chol(matrix(c(0.5^2, 0.4 * 0.5 * 0.3, 0.4 * 0.5 * 0.3, 0.3^2), 2)))
b <- t(L %*% matrix(rnorm(2 * G), 2))
eta <- 1.0 + 0.5 * x + b[as.integer(g), 1] + b[as.integer(g), 2] * x
expo <- runif(G * m, 0.5, 3)
sim <- data.frame(g = g, x = x, expo = expo,
                  y = rpois(G * m, exp(eta)),
                  yrate = rpois(G * m, expo * exp(0.3 + 0.5 * x + b[as.integer(g), 1])))
# A crossed factor h for a random slope beside another term (drawn after
# the columns above, which stay as they were).
sim$h <- factor(rep(sprintf("h%02d", 1:12), length.out = G * m))
sim$y3 <- rpois(G * m, exp(eta + rnorm(12, 0, 0.4)[as.integer(sim$h)]))
write_data(sim, "poisson_sim")
f7 <- function() glmer(y ~ x + (1 + x | g), sim, poisson)
save_ref(describe(f7(), "y ~ x + (1 + x | g)", "poisson", "log", "glmer_poisson_sim.csv"), "poisson_slope", f7)
f7b <- function() glmer(y3 ~ x + (1 + x | g) + (1 | h), sim, poisson)
save_ref(describe(f7b(), "y3 ~ x + (1 + x | g) + (1 | h)", "poisson", "log", "glmer_poisson_sim.csv"),
         "poisson_slope_crossed", f7b)
f8 <- function() glmer(yrate ~ x + (1 | g), sim, poisson, offset = log(expo))
save_ref(describe(f8(), "yrate ~ x + (1 | g)", "poisson", "log", "glmer_poisson_sim.csv",
                  list(offset = "log(expo)")), "poisson_offset", f8)

# VerbAgg's first 2000 rows: lme4's deviance function jumps (by ~0.07) near
# the exact Laplace optimum, where its PIRLS stops one iteration earlier.
va2 <- va[1:2000, ]
f9 <- function() glmer(r2 ~ Anger + btype + (1 | id), va2, binomial)
save_ref(describe(f9(), "r2 ~ Anger + btype + (1 | id)", "binomial", "logit",
                  "glmer_verbagg.csv, rows 1-2000"), "verbagg2000", f9)

# Binary data with no group effect: a boundary (singular) fit.
set.seed(3)  # the first seed of 1, 2, ... whose fit is singular
sg <- data.frame(g = factor(rep(sprintf("s%02d", 1:30), each = 10)), x = rnorm(300))
sg$y <- rbinom(300, 1, plogis(-0.3 + 0.8 * sg$x))
write_data(sg, "singular")
f10 <- function() glmer(y ~ x + (1 | g), sg, binomial)
save_ref(describe(f10(), "y ~ x + (1 | g)", "binomial", "logit", "glmer_singular.csv"), "singular", f10)
