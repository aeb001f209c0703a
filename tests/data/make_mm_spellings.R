# Reference model matrices for tests/test_spellings.py: R's model.matrix (and
# model.offset) of each formula spelling on mm_data.csv, and the same terms on
# mm_newdata.csv through R's prediction path (model.frame on the training terms,
# whose predvars makepredictcall filled with the training basis).
# Run from the repository root: Rscript tests/data/make_mm_spellings.R
library(splines)
library(lme4)  # dummy()
set.seed(20261122)
n <- 40
d <- data.frame(
  x = round(rnorm(n), 3),
  x.1 = round(runif(n), 3),
  z = sample(1:12, n, replace = TRUE),
  day = rep(c(0L, 1L, 2L, 4L, 6L, 10L, 14L, 21L), length.out = n),
  f = factor(sample(c("a", "b", "c"), n, replace = TRUE)),
  s = sample(c("p", "q", "r"), n, replace = TRUE),
  b = sample(c(TRUE, FALSE), n, replace = TRUE),
  check.names = FALSE, stringsAsFactors = FALSE
)
d[["my var"]] <- round(runif(n, 1, 5), 2)
new <- data.frame(
  x = c(-3, -0.5, 0, 0.25, 1.5, 3), x.1 = c(0.1, 0.2, 0.5, 0.7, 0.9, 0.3),
  z = c(1L, 3L, 5L, 7L, 12L, 2L), day = c(0L, 2L, 6L, 14L, 21L, 1L),
  f = factor(c("a", "b", "c", "a", "b", "c")), s = c("p", "q", "r", "p", "q", "r"),
  b = c(TRUE, FALSE, TRUE, FALSE, TRUE, FALSE), check.names = FALSE, stringsAsFactors = FALSE
)
new[["my var"]] <- c(1.5, 2, 2.5, 3, 3.5, 4)
# new x reaches beyond the training range (ns extrapolates linearly, bs by its
# boundary polynomials); new factor values are training levels
cases <- list(
  power_in_I = "~ day + I(day^2)",
  power_star = "~ day + I(day**2)",
  interaction_power = "~ (x + z + f)^2",
  interaction_power3 = "~ (x + x.1 + f)^3",
  star_slash = "~ x * f + f/z",
  in_op = "~ x %in% f",
  colon_only = "~ x:f",
  no_intercept_factor = "~ 0 + f",
  minus_one = "~ x + f - 1",
  dotted = "~ x.1 + `x.1`:x",
  spaced = "~ `my var` + log(`my var`)",
  elementwise = "~ log(`my var` + 10) + exp(x) + sqrt(abs(x)) + log(z, base = 2) + log10(x.1) + log1p(day)",
  arithmetic = "~ I(x * 2) + I(z %% 3) + I(-x^2/2) + I(1/z)",
  scale = "~ scale(x)",
  scale_nocenter = "~ scale(x, center = FALSE)",
  scale_noscale = "~ scale(x, scale = FALSE)",
  poly = "~ poly(x, 2)",
  poly3 = "~ poly(x, degree = 3)",
  poly_raw = "~ poly(x, 3, raw = TRUE)",
  poly_by_factor = "~ poly(x, 2) * f",
  factor = "~ factor(z)",
  as_factor = "~ as.factor(day)",
  factor_logical = "~ factor(z > 6)",
  logical = "~ b",
  character = "~ s",
  relevel = "~ relevel(f, ref = \"b\")",
  relevel_by_x = "~ x:relevel(f, ref = \"c\")",
  ns = "~ ns(x, 3)",
  ns_df = "~ splines::ns(x, df = 4)",
  ns_knots = "~ ns(x, knots = c(-0.5, 0.5))",
  bs = "~ bs(x, df = 5)",
  bs_knots = "~ bs(x, knots = c(-0.5, 0.5), degree = 2)",
  dummy_one = "~ 0 + dummy(f, \"a\")",
  dummy_two = "~ dummy(f, c(\"a\", \"c\"))",
  offset = "~ x + offset(log(z))",
  offset2 = "~ x + offset(z) + offset(day / 2)"
)
rows <- list()
for (id in names(cases)) {
  fo <- as.formula(cases[[id]])
  mf <- model.frame(fo, d)
  tt <- terms(mf)
  for (which in c("train", "new")) {
    frame <- if (which == "train") mf else model.frame(tt, new, xlev = .getXlevels(tt, mf))
    X <- model.matrix(tt, frame)
    off <- model.offset(frame)
    if (!is.null(off)) X <- cbind(X, "(offset)" = off)
    rows[[length(rows) + 1]] <- data.frame(
      case = id, formula = cases[[id]], which = which,
      row = rep(seq_len(nrow(X)) - 1L, ncol(X)), column = rep(colnames(X), each = nrow(X)),
      value = sprintf("%.17g", as.vector(X)), stringsAsFactors = FALSE
    )
  }
}
write.csv(d, "tests/data/mm_data.csv", row.names = FALSE)
write.csv(new, "tests/data/mm_newdata.csv", row.names = FALSE)
write.csv(do.call(rbind, rows), "tests/data/mm_spellings.csv", row.names = FALSE)
