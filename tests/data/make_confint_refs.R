# References for tests/test_confint.py (issue 18 item 4): lme4's confint.merMod(method = "profile").
# Run from tests/data:  Rscript make_confint_refs.R [profile] [boot]   (all when empty; the profiles take
# about 30 s, writing confint_profile.json, the bootstrap a few minutes, writing confint_boot.json)
# Needs r-cran-lme4 and r-cran-jsonlite.
#
# lme4's profile() refits a REML fit by ML (devfun2 calls refitML) and profiles the ML deviance with
# beta profiled out, on the sd/cor scale (.sig01, ... in the column-major lower triangle of each term's
# SD/correlation matrix, then .sigma), each parameter fixed in turn and the others re-optimised;
# zeta = sign(x - x_ml) sqrt(dev(x) - dev_ml) and the interval ends where zeta = qnorm((1 -/+ level) / 2),
# read off an interpolating spline through the profile (confint.thpr). Where a side never reaches the
# cut-off (an SD at 0) the end is the parameter's bound.
# For each model: the intervals (old and new names, levels 0.95 and 0.8), the ML fit's estimates on the
# profile scale, and some rows of the profile itself (parameter value, zeta) for a check of the curve.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
only <- commandArgs(trailingOnly = TRUE)
want <- function(id) !length(only) || id %in% only
dump <- function(x, file) writeLines(toJSON(x, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"), file)

models <- list(
  sleepstudy = list(formula = "Reaction ~ Days + (Days | Subject)", data = lme4::sleepstudy, REML = TRUE),
  sleepstudy_uncorr = list(formula = "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
                           data = lme4::sleepstudy, REML = TRUE),
  penicillin = list(formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", data = lme4::Penicillin, REML = TRUE),
  dyestuff2 = list(formula = "Yield ~ 1 + (1 | Batch)", data = lme4::Dyestuff2, REML = TRUE),
  # a 3 x 3 term: lme4's names; its SD and sigma rows (its correlation rows come with warnings of
  # non-monotonic profiles: safe_chol maps correlations that make no valid matrix to another matrix)
  machines = list(formula = "score ~ Machine + (Machine | Worker)",
                  data = transform(read.csv("suite_machines.csv", stringsAsFactors = TRUE), Worker = factor(Worker)),
                  REML = TRUE)
)
if (want("profile")) {
out <- list(lme4_version = as.character(packageVersion("lme4")))
for (id in names(models)) {
  m <- models[[id]]
  fm <- lmer(as.formula(m$formula), m$data, REML = m$REML)
  pr <- suppressWarnings(profile(fm, signames = TRUE))
  ci <- suppressWarnings(confint(pr, level = 0.95))
  ci80 <- suppressWarnings(confint(pr, level = 0.8))
  ml <- refitML(fm)
  newnames <- rownames(confint(fm, method = "Wald", oldNames = FALSE))
  # a few profile rows per variance parameter (the curve itself, away from the optimum)
  vp <- grep("^\\.sig", rownames(ci), value = TRUE)
  curve <- lapply(vp, function(p) {
    d <- pr[pr$.par == p, c(p, ".zeta")]
    d <- d[is.finite(d$.zeta) & abs(d$.zeta) > 0.3 & abs(d$.zeta) < 2.5, ]
    d <- d[seq(1, nrow(d), length.out = min(nrow(d), 6)), ]
    list(par = p, value = d[[p]], zeta = d$.zeta)
  })
  sdcor <- lme4:::Cv_to_Sv(getME(ml, "theta"), n = lengths(ml@cnms), s = sigma(ml))
  out[[id]] <- list(formula = m$formula, REML = m$REML,
                    names = rownames(ci), new_names = newnames,
                    lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                    lower80 = unname(ci80[, 1]), upper80 = unname(ci80[, 2]),
                    ml_sdcor = unname(as.numeric(sdcor)), ml_deviance = deviance(ml),
                    curve = curve)
}
dump(out, "confint_profile.json")
}

# lme4's parametric bootstrap percentile intervals (confint(method = "boot"), bootMer with use.u = FALSE,
# boot.ci's "perc" type), with many simulations so that their own Monte Carlo error is small next to a
# test's run of a few hundred: confint_boot.json
if (want("boot")) {
set.seed(20261203)
boot <- list(lme4_version = as.character(packageVersion("lme4")))
fm <- lmer(Yield ~ 1 + (1 | Batch), lme4::Dyestuff)
t0 <- proc.time()[["elapsed"]]
ci <- suppressWarnings(confint(fm, method = "boot", nsim = 4000, quiet = TRUE))
boot$dyestuff <- list(formula = "Yield ~ 1 + (1 | Batch)", REML = TRUE, nsim = 4000, names = rownames(ci),
                      lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                      seconds = proc.time()[["elapsed"]] - t0)
dump(boot, "confint_boot.json")
}
