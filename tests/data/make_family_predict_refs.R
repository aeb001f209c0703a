# References of the point fits' predictions (tests/test_families_downstream.py): ordinal::clmm's fitted
# probabilities on wine, glmmTMB's predict() of a zero-inflated Poisson on Salamanders, lmer's fitted
# values of log(Reaction) on sleepstudy (lognormal).
# Run from the repository root:  Rscript tests/data/make_family_predict_refs.R
suppressPackageStartupMessages({ library(ordinal); library(glmmTMB); library(lme4); library(jsonlite) })

# cumulative (logit): clmm's fitted() is P(Y = observed category) at the judges' conditional modes;
# the whole matrix P(Y = k), k = 1..5, from clmm's estimates and modes by the model's formula
data("wine", package = "ordinal")
cf <- clmm(rating ~ temp + contact + (1 | judge), data = wine)
eta <- drop(model.matrix(~ temp + contact, wine)[, -1] %*% cf$beta) + ranef(cf)$judge[as.integer(wine$judge), 1]
cum <- cbind(0, plogis(outer(eta, cf$alpha, function(e, a) a - e)), 1)
probs <- cum[, -1] - cum[, -ncol(cum)]
stopifnot(max(abs(probs[cbind(seq_along(eta), as.integer(wine$rating))] - fitted(cf))) < 1e-12)

# zero-inflated Poisson: glmmTMB's predictions, conditional on the sites' modes ("link": eta of the
# count part; "response": (1 - zi) exp(eta)); new data with a site not in the data (its effect 0)
data("Salamanders", package = "glmmTMB")
zf <- glmmTMB(count ~ mined + (1 | site), ziformula = ~1, data = Salamanders, family = poisson)
new <- data.frame(mined = factor(c("yes", "no", "no"), levels = levels(Salamanders$mined)),
                  site = c("R-1", "R-1", "new-site"))
# lognormal: lmer(log(Reaction), REML = FALSE)'s fitted values (the log scale, at the subjects' modes) and
# the lognormal mean exp(fitted + sigma^2 / 2)
data("sleepstudy", package = "lme4")
lf <- lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)

ref <- list(
  sleepstudy_lognormal = list(call = "lmer(log(Reaction) ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)",
                              link = unname(fitted(lf)), mean = unname(exp(fitted(lf) + sigma(lf)^2 / 2))),
  wine = list(call = "clmm(rating ~ temp + contact + (1 | judge), data = wine)",
              fitted = fitted(cf), probs = unname(probs), categories = levels(wine$rating), eta = unname(eta)),
  salamanders_zip = list(call = "glmmTMB(count ~ mined + (1 | site), ziformula = ~1, data = Salamanders, family = poisson)",
                         link = unname(predict(zf, type = "link")), response = unname(predict(zf, type = "response")),
                         newdata = new, new_link = unname(predict(zf, newdata = new, type = "link", allow.new.levels = TRUE)),
                         new_response = unname(predict(zf, newdata = new, type = "response", allow.new.levels = TRUE))),
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), ordinal = as.character(packageVersion("ordinal")),
                  glmmTMB = as.character(packageVersion("glmmTMB"))))
write_json(ref, "tests/data/family_predict_refs.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
