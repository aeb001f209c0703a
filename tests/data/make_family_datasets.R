# The bundled example data sets of the response families (bayesmer.datasets.load), written to
# src/bayesmer/data/<name>.csv with their factors' levels (and whether ordered) in <name>.levels.json,
# and R's own summaries of them in tests/data/family_datasets_ref.json (tests/test_families_downstream.py).
# Run from the repository root:  Rscript tests/data/make_family_datasets.R
suppressPackageStartupMessages({ library(jsonlite) })
out <- "src/bayesmer/data"

factor_levels <- function(d) {
  f <- Filter(is.factor, d)
  lapply(f, function(x) list(levels = levels(x), ordered = is.ordered(x)))
}
summ <- function(df) {
  lapply(df, function(x) {
    if (is.factor(x)) list(levels = levels(x), counts = as.vector(table(x)), ordered = is.ordered(x))
    else list(sum = sum(as.numeric(x)), sumsq = sum(as.numeric(x)^2), min = min(x), max = max(x))
  })
}
ref <- list()
bundle <- function(name, d, source) {
  write.csv(d, file.path(out, paste0(name, ".csv")), row.names = FALSE)
  writeLines(toJSON(factor_levels(d), auto_unbox = TRUE, pretty = TRUE), file.path(out, paste0(name, ".levels.json")))
  ref[[name]] <<- list(nrow = nrow(d), columns = names(d), summary = summ(d), source = source)
}

# negative binomial: brms's epilepsy (Thall and Vail 1990; brms, GPL-2)
data("epilepsy", package = "brms")
bundle("epilepsy", epilepsy, paste("brms", packageVersion("brms")))
# zero-inflated counts: glmmTMB's Salamanders (Price et al. 2016; glmmTMB, AGPL-3)
data("Salamanders", package = "glmmTMB")
bundle("salamanders", Salamanders, paste("glmmTMB", packageVersion("glmmTMB")))
# cumulative: ordinal's wine (Randall 1989; ordinal, GPL >= 2)
data("wine", package = "ordinal")
bundle("wine", wine, paste("ordinal", packageVersion("ordinal")))

# Gamma (log link): simulated as in make_family_refs.R (the same draw as tests/data/family_gamma_sim.csv)
set.seed(20261203)
g <- factor(rep(sprintf("g%02d", 1:40), each = 6)); x <- rnorm(240); b <- rnorm(40, sd = 0.4)
mu <- exp(1 + 0.3 * x + b[as.integer(g)])
bundle("gamma_sim", data.frame(y = rgamma(240, shape = 3, rate = 3 / mu), x = x, g = g),
       "simulated: set.seed(20261203); y ~ Gamma(shape 3, mean exp(1 + 0.3 x + b_g)), b_g ~ N(0, 0.4^2)")
# beta (logit link): simulated as in make_family_refs.R (the same draw as tests/data/family_beta.csv)
set.seed(20261204)
g <- factor(rep(sprintf("s%02d", 1:30), each = 8)); x <- rnorm(240); b <- rnorm(30, sd = 0.5)
mu <- plogis(-0.5 + 0.6 * x + b[as.integer(g)]); phi <- 12
bundle("beta_sim", data.frame(y = rbeta(240, mu * phi, (1 - mu) * phi), x = x, g = g),
       "simulated: set.seed(20261204); y ~ Beta(mean plogis(-0.5 + 0.6 x + b_g), precision 12), b_g ~ N(0, 0.5^2)")

ref$versions <- list(R = R.version.string, brms = as.character(packageVersion("brms")),
                     glmmTMB = as.character(packageVersion("glmmTMB")), ordinal = as.character(packageVersion("ordinal")))
write_json(ref, "tests/data/family_datasets_ref.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
