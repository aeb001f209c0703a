# emmeans's delta-method SE of E[Y] (mode = "mean.class") for ordinal::clmm on wine, at the population
# level (emmeans ignores clmm's random effects): the reference for bayesmer's REML side of
# fit.predictions(kind="mean", include_random=False) on a cumulative model, whose SE varies beta and
# the thresholds together. R 4.2.2, ordinal 2022.11.16, emmeans (Debian's r-cran-emmeans).
#   cd tests/data && Rscript make_emmeans_clmm_refs.R
suppressMessages({library(ordinal); library(emmeans); library(jsonlite)})
d <- read.csv("family_wine.csv")
d$rating <- factor(d$rating, ordered = TRUE); d$judge <- factor(d$judge)
m <- clmm(rating ~ temp + contact + (1 | judge), data = d)
e <- as.data.frame(summary(emmeans(m, ~ temp * contact, mode = "mean.class")))
out <- list(formula = "rating ~ temp + contact + (1 | judge)", emmeans_version = as.character(packageVersion("emmeans")),
            ordinal_version = as.character(packageVersion("ordinal")),
            temp = as.character(e$temp), contact = as.character(e$contact), mean_class = e$mean.class, SE = e$SE)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "emmeans_clmm_wine.json")
