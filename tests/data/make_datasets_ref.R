# Reference summaries of lme4's data sets that bayesmer bundles (tests/test_datasets.py).
# Run from the repository root: Rscript tests/data/make_datasets_ref.R
library(lme4)
library(jsonlite)

summ <- function(df) {
  lapply(df, function(x) {
    if (is.factor(x)) {
      list(levels = levels(x), counts = as.vector(table(x)))
    } else {
      list(sum = sum(as.numeric(x)), sumsq = sum(as.numeric(x)^2), min = min(x), max = max(x))
    }
  })
}
sets <- list(sleepstudy = sleepstudy, dyestuff = Dyestuff, dyestuff2 = Dyestuff2,
             penicillin = Penicillin, pastes = Pastes)
ref <- lapply(sets, function(df) list(nrow = nrow(df), columns = names(df), summary = summ(df)))
ref$lme4_version <- as.character(packageVersion("lme4"))
write_json(ref, "tests/data/datasets_ref.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
