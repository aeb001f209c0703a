# Reference REML fits for tests/test_lme4_suites.py: models from the test suites
# and examples of lme4, nlme and MixedModels.jl that use the formula spellings of
# issue 9, fitted by lme4 (1.1-31 here). Writes tests/data/suite_fits.jsonl (one
# fit per line; the extension keeps it out of test_reml.py's *.json) and the
# data as suite_*.csv.
# Run from the repository root: Rscript tests/data/make_suite_fits.R
suppressMessages({library(lme4); library(nlme); library(jsonlite)})

out <- "tests/data"
pixel <- as.data.frame(nlme::Pixel)
orthodont <- as.data.frame(nlme::Orthodont)
machines <- as.data.frame(nlme::Machines)
# lme4 tests/testthat/test-summary.R: the x.1 / x.2 data, made as there
set.seed(0)
J <- 8; n <- 10; N <- J * n
beta <- c(5, 2, 4)
u <- matrix(rnorm(J * 3), J, 3)
x.1 <- rnorm(N); x.2 <- rnorm(N)
g <- rep(1:J, rep(n, J))
y <- 1 * (beta[1] + u[g, 1]) + x.1 * (beta[2] + u[g, 2]) + x.2 * (beta[3] + u[g, 3]) + rnorm(N)
summ <- data.frame(y = y, x.1 = x.1, x.2 = x.2, g = g)
dyestuff <- as.data.frame(lme4::Dyestuff)

sets <- list(pixel = pixel, orthodont = orthodont, machines = machines, summary_x1 = summ)
for (nm in names(sets)) {
  write.csv(sets[[nm]], file.path(out, paste0("suite_", nm, ".csv")), row.names = FALSE)
}

cases <- list(
  # nlme's Pixel example, lme(pixel ~ day + I(day^2), random = list(Dog = ~ day, Side = ~ 1)),
  # in lme4's spelling (MixedModels.jl's test uses the same model)
  list(id = "pixel", data = "pixel", source = "nlme example(Pixel); MixedModels.jl",
       formula = "pixel ~ day + I(day^2) + (day | Dog) + (1 | Side:Dog)"),
  # nlme example(Orthodont) / lme(distance ~ age, Orthodont) and the book's centred age
  list(id = "orthodont", data = "orthodont", source = "nlme example(lme): fm1",
       formula = "distance ~ age + (age | Subject)"),
  list(id = "orthodont_sex", data = "orthodont", source = "nlme example(lme): fm2",
       formula = "distance ~ age + Sex + (1 | Subject)"),
  list(id = "orthodont_centred", data = "orthodont", source = "Pinheiro & Bates, I(age - 11)",
       formula = "distance ~ I(age - 11) * Sex + (I(age - 11) | Subject)"),
  # nlme: lme(score ~ Machine, random = ~ 1 | Worker/Machine); MixedModels.jl's machines
  list(id = "machines", data = "machines", source = "nlme Machines; MixedModels.jl",
       formula = "score ~ Machine + (1 | Worker/Machine)"),
  list(id = "machines_slopes", data = "machines", source = "Bates, lme4 book ch. 2",
       formula = "score ~ Machine + (0 + Machine | Worker)"),
  # a bar without parentheses: lme4 reads it as (1 | Batch)
  list(id = "dyestuff_bare_bar", data = "dyestuff", source = "lme4 findbars(Yield ~ 1 | Batch)",
       formula = "Yield ~ 1 | Batch"),
  # lme4 tests/testthat/test-summary.R, dotted names
  list(id = "summary_x1", data = "summary_x1", source = "lme4 tests/testthat/test-summary.R m1",
       formula = "y ~ x.1 + x.2 + (1 + x.1 | g)"),
  list(id = "summary_x1_x2", data = "summary_x1", source = "lme4 tests/testthat/test-summary.R m2",
       formula = "y ~ x.1 + x.2 + (1 + x.1 + x.2 | g)")
)

lines <- character()
for (cs in cases) {
  d <- if (cs$data == "dyestuff") dyestuff else sets[[cs$data]]
  # converged tightly (lme4's test-summary.R tightens nloptwrap too): the
  # default tolerances leave some SDs 2e-4 off the optimum
  ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12,
                                                               xtol_rel = 1e-12, maxeval = 1e5))
  fit <- withCallingHandlers(lmer(as.formula(cs$formula), data = d, REML = TRUE, control = ctrl),
                              warning = function(w) stop(cs$id, ": ", conditionMessage(w)))
  vc <- VarCorr(fit)
  levels <- Filter(Negate(is.null), lapply(d, function(col) if (is.factor(col)) levels(col)))
  ref <- list(
    id = cs$id, source = cs$source,
    data = if (cs$data == "dyestuff") "dyestuff.csv" else paste0("suite_", cs$data, ".csv"),
    formula = cs$formula, REML = TRUE, levels = levels, nobs = nobs(fit),
    fixef_names = I(names(fixef(fit))), fixef = I(unname(fixef(fit))),
    se = I(unname(sqrt(diag(as.matrix(vcov(fit)))))), sigma = sigma(fit),
    varcorr = lapply(names(vc), function(grp) {
      m <- vc[[grp]]
      list(group = grp, terms = I(colnames(m)), sd = I(unname(attr(m, "stddev"))),
           corr = unname(if (ncol(m) > 1) attr(m, "correlation") else matrix(1)))
    }),
    objective = unname(REMLcrit(fit))
  )
  lines <- c(lines, toJSON(ref, auto_unbox = TRUE, digits = NA, matrix = "rowmajor"))
}
writeLines(lines, file.path(out, "suite_fits.jsonl"))
