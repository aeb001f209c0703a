# References for tests/test_interpret.py (issue 18, "after the fit").
# Run from tests/data:  Rscript make_interpret_refs.R [reml] [brms_sleepstudy] [brms_cbpp]   (all when empty)
# Needs r-cran-lme4, r-cran-brms, r-cran-performance, r-cran-jsonlite (brms: see make_brms_refs.R).
#
# interpret_reml.json: lme4's fits (sleepstudy REML, cbpp and the Poisson slope by Laplace) and, by hand,
#   Wald tests of linear hypotheses, performance's r2_nakagawa, and predictions / comparisons / slopes with
#   delta-method SEs over the fixed effects (the analytic Jacobian of the averaged quantity times vcov: what
#   marginaleffects computes numerically; marginaleffects is not packaged for Debian).
# brms_interpret_<id>.json: brms fits with make_brms_refs.R's priors, 4 x 1000 draws; hypothesis(),
#   bayes_R2() (conditional, re_formula = NULL, and marginal, re_formula = NA), and per-draw averages of
#   posterior_linpred(transform = TRUE) (the probability for a binomial with trials), with mean, sd and the
#   Monte Carlo SE of the mean (posterior::mcse_mean); the fixed-effect draws for exact checks.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
only <- commandArgs(trailingOnly = TRUE)
want <- function(id) !length(only) || id %in% only
dump <- function(x, file) writeLines(toJSON(x, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"), file)

ss <- lme4::sleepstudy
cb <- read.csv("glmer_cbpp.csv", colClasses = c(herd = "factor", period = "factor"))
po <- read.csv("glmer_poisson_sim.csv", stringsAsFactors = TRUE)

# Simpson's rule over u in [-10, 10] sd: E f(eta + u), u ~ N(0, v), per element of eta and v (vectors)
integrated <- function(f, eta, v) {
  m <- 400; u <- seq(-10, 10, length.out = m + 1); w <- c(1, rep(c(4, 2), m / 2 - 1), 4, 1) * (20 / m) / 3
  w <- w * dnorm(u)
  out <- numeric(length(eta))
  for (k in seq_along(u)) out <- out + w[k] * f(eta + sqrt(v) * u[k])
  out
}
avg_by <- function(x, g) as.numeric(tapply(x, g, mean))

if (want("reml")) {
  out <- list(lme4_version = as.character(packageVersion("lme4")),
              performance_version = as.character(packageVersion("performance")))
  # ---- sleepstudy (REML) ----
  m <- lmer(Reaction ~ Days + (Days | Subject), ss)
  b <- fixef(m); V <- as.matrix(vcov(m)); X <- getME(m, "X")
  wald <- function(cvec, rhs) {
    est <- sum(cvec * b) - rhs; se <- sqrt(drop(t(cvec) %*% V %*% cvec)); list(estimate = est, se = se, z = est / se)
  }
  out$sleep_hyp <- list(
    "Days > 10" = wald(c(0, 1), 10), "Days = 10" = wald(c(0, 1), 10),
    "Intercept + 10 * Days > 350" = wald(c(1, 10), 350), "Days < 8" = wald(c(0, 1), 8))
  r2 <- performance::r2_nakagawa(m)
  vv <- insight::get_variance(m)
  out$sleep_r2 <- list(conditional = unname(r2$R2_conditional), marginal = unname(r2$R2_marginal),
                       var_fixed = vv$var.fixed, var_random = vv$var.random, var_residual = vv$var.residual)
  fitted_c <- fitted(m)
  J <- colMeans(X)
  out$sleep_avg <- list(estimate = mean(fitted_c), se = sqrt(drop(t(J) %*% V %*% J)))
  Jd <- apply(X, 2, function(col) avg_by(col, ss$Days))
  out$sleep_by_days <- list(Days = sort(unique(ss$Days)), estimate = avg_by(fitted_c, ss$Days),
                            se = sqrt(rowSums((Jd %*% V) * Jd)))
  grid <- data.frame(Days = 0:9)
  Xg <- model.matrix(~ Days, grid)
  out$sleep_grid_zero <- list(Days = 0:9, estimate = drop(Xg %*% b), se = sqrt(rowSums((Xg %*% V) * Xg)),
                              lme4_predict = unname(predict(m, grid, re.form = NA)))
  out$sleep_slope <- list(estimate = unname(b["Days"]), se = sqrt(V["Days", "Days"]))

  # ---- cbpp (binomial, logit; Laplace) ----
  g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial)
  b <- fixef(g); V <- as.matrix(vcov(g)); X <- getME(g, "X")
  s2 <- VarCorr(g)$herd[1, 1]
  out$cbpp_fit <- list(fixef = unname(b), vcov = unname(V), sd_herd = sqrt(s2))
  out$cbpp_hyp <- list("period2 < 0" = wald(c(0, 1, 0, 0), 0),
                       "period2 - period3 = 0" = wald(c(0, 1, -1, 0), 0),
                       "Intercept + period4 < -2" = wald(c(1, 0, 0, 1), -2))
  r2 <- performance::r2_nakagawa(g)
  vv <- insight::get_variance(g)
  out$cbpp_r2 <- list(conditional = unname(r2$R2_conditional), marginal = unname(r2$R2_marginal),
                      var_fixed = vv$var.fixed, var_random = vv$var.random, var_residual = vv$var.residual,
                      var_distribution = vv$var.distribution)
  re <- drop(getME(g, "Z") %*% unlist(ranef(g)$herd))
  eta0 <- drop(X %*% b)
  modes <- list(conditional = eta0 + re, zero = eta0)
  # unit level (conditional): the first 6 rows
  p <- plogis(modes$conditional)
  Ju <- (p * (1 - p) * X)[1:6, ]
  out$cbpp_unit <- list(estimate = p[1:6], se = sqrt(rowSums((Ju %*% V) * Ju)),
                        lme4_predict = unname(predict(g, type = "response")[1:6]))
  by_period <- list()
  contrasts_ <- list()
  for (mode in c("conditional", "zero", "integrated")) {
    # per row: the probability at each period and its gradient in eta (the chain rule's factor)
    at <- function(k) {
      Xk <- X; Xk[, -1] <- 0; if (k > 1) Xk[, k] <- 1
      e <- drop(Xk %*% b) + if (mode == "conditional") re else 0
      if (mode == "integrated") list(p = integrated(plogis, e, rep(s2, length(e))),
                                     d = integrated(dlogis, e, rep(s2, length(e))), X = Xk)
      else list(p = plogis(e), d = dlogis(e), X = Xk)
    }
    e <- eta0 + if (mode == "conditional") re else 0
    pp <- if (mode == "integrated") integrated(plogis, e, rep(s2, length(e))) else plogis(e)
    dd <- if (mode == "integrated") integrated(dlogis, e, rep(s2, length(e))) else dlogis(e)
    Jp <- apply(dd * X, 2, function(col) avg_by(col, cb$period))
    by_period[[mode]] <- list(period = levels(cb$period), estimate = avg_by(pp, cb$period),
                              se = sqrt(rowSums((Jp %*% V) * Jp)))
    ref <- at(1)
    est <- c(); se <- c()
    for (k in 2:4) {
      hi <- at(k)
      Jc <- colMeans(hi$d * hi$X - ref$d * ref$X)
      est <- c(est, mean(hi$p - ref$p)); se <- c(se, sqrt(drop(t(Jc) %*% V %*% Jc)))
    }
    contrasts_[[mode]] <- list(contrast = c("2 - 1", "3 - 1", "4 - 1"), estimate = est, se = se)
  }
  out$cbpp_by_period <- by_period
  out$cbpp_contrast_period <- contrasts_

  # ---- Poisson random slope (log link): the average slope dE[y]/dx, conditional ----
  pm <- glmer(y ~ x + (1 + x | g), po, family = poisson)
  b <- fixef(pm); V <- as.matrix(vcov(pm)); X <- getME(pm, "X")
  rg <- ranef(pm)$g[as.character(po$g), ]
  slope_at <- function(beta) {
    mu <- exp(drop(X %*% beta) + rg[, 1] + rg[, 2] * po$x)
    mean(mu * (beta[2] + rg[, 2]))
  }
  h <- 1e-6
  Js <- sapply(1:2, function(j) { e <- replace(numeric(2), j, h); (slope_at(b + e) - slope_at(b - e)) / (2 * h) })
  # and the average comparison E[y | x + 1] - E[y | x], conditional
  cmp_at <- function(beta) {
    e <- drop(X %*% beta) + rg[, 1] + rg[, 2] * po$x
    mean(exp(e + beta[2] + rg[, 2]) - exp(e))
  }
  Jc <- sapply(1:2, function(j) { e <- replace(numeric(2), j, h); (cmp_at(b + e) - cmp_at(b - e)) / (2 * h) })
  out$pois_fit <- list(fixef = unname(b))
  r2 <- suppressWarnings(performance::r2_nakagawa(pm))
  out$pois_r2 <- list(conditional = unname(r2$R2_conditional), marginal = unname(r2$R2_marginal))
  out$pois_slope <- list(estimate = slope_at(b), se = sqrt(drop(t(Js) %*% V %*% Js)))
  out$pois_comparison <- list(estimate = cmp_at(b), se = sqrt(drop(t(Jc) %*% V %*% Jc)))
  dump(out, "interpret_reml.json")
}

if (want("brms_sleepstudy") || want("brms_cbpp")) {
  suppressPackageStartupMessages({library(brms); library(posterior)})
  stat <- function(x, chains = 4) {
    list(mean = mean(x), sd = sd(x), mcse_mean = mcse_mean(matrix(x, ncol = chains)))
  }
  stats_cols <- function(M, chains = 4) lapply(seq_len(ncol(M)), function(j) stat(M[, j], chains))
  hyp_table <- function(h) {
    tab <- h$hypothesis
    lapply(seq_len(nrow(tab)), function(i) {
      r <- as.list(tab[i, ])
      r$CI.Lower <- if (is.finite(r$CI.Lower)) r$CI.Lower else NULL
      r$CI.Upper <- if (is.finite(r$CI.Upper)) r$CI.Upper else NULL
      r
    })
  }
  fit_brm <- function(formula, data, pri, family, sample_prior = "no") {
    brm(as.formula(formula), data = data, family = family, prior = pri, chains = 4, iter = 2000, warmup = 1000,
        cores = 1, seed = 20261203, refresh = 0, sample_prior = sample_prior)
  }
}

if (want("brms_sleepstudy")) {
  pri <- c(set_prior("normal(0, 500)", class = "b"), set_prior("cauchy(0, 50)", class = "sd"),
           set_prior("cauchy(0, 50)", class = "sigma"), set_prior("lkj(2)", class = "cor"))
  t0 <- proc.time()[["elapsed"]]
  fit <- fit_brm("Reaction ~ 0 + Intercept + Days + (1 + Days | Subject)", ss, pri, gaussian(), "yes")
  hyps <- c("Days > 10", "Days = 10", "Intercept + 10 * Days > 350", "Days < 8")
  h <- hypothesis(fit, hyps)
  r2c <- bayes_R2(fit, summary = FALSE)[, 1]
  r2m <- bayes_R2(fit, re_formula = NA, summary = FALSE)[, 1]
  ep <- posterior_epred(fit)
  by_days <- t(apply(ep, 1, function(r) avg_by(r, ss$Days)))
  grid <- data.frame(Days = 0:9)
  epz <- posterior_epred(fit, newdata = grid, re_formula = NA)
  dr <- as_draws_df(fit)
  out <- list(id = "sleepstudy", brms_version = as.character(packageVersion("brms")),
              formula = "Reaction ~ 0 + Intercept + Days + (1 + Days | Subject)",
              priors = list(fixed = "Normal(0, 500)", sd = "HalfCauchy(50)", sigma = "HalfCauchy(50)", corr = "LKJ(2)"),
              draws = nrow(ep), seconds = proc.time()[["elapsed"]] - t0,
              hypotheses = hyps, hypothesis = hyp_table(h),
              # hypothesis() on these very draws, the "=" Evid.Ratio from the sampled prior (sample_prior = "yes")
              b_Intercept = dr$b_Intercept, b_Days = dr$b_Days,
              r2_conditional = c(stat(r2c), list(q2.5 = unname(quantile(r2c, 0.025)), q97.5 = unname(quantile(r2c, 0.975)))),
              r2_marginal = c(stat(r2m), list(q2.5 = unname(quantile(r2m, 0.025)), q97.5 = unname(quantile(r2m, 0.975)))),
              avg_conditional = stat(rowMeans(ep)),
              by_days_conditional = stats_cols(by_days),
              grid_zero = stats_cols(epz))
  dump(out, "brms_interpret_sleepstudy.json")
}

if (want("brms_cbpp")) {
  pri <- c(set_prior("normal(0, 2.5)", class = "b"), set_prior("cauchy(0, 1)", class = "sd"))
  t0 <- proc.time()[["elapsed"]]
  fit <- fit_brm("incidence | trials(size) ~ 0 + Intercept + period + (1 | herd)", cb, pri, binomial())
  hyps <- c("period2 < 0", "period2 - period3 = 0", "Intercept + period4 < -2")
  h <- hypothesis(fit, hyps)
  r2c <- bayes_R2(fit, summary = FALSE)[, 1]
  r2m <- bayes_R2(fit, re_formula = NA, summary = FALSE)[, 1]
  dr <- as_draws_df(fit)
  sdh <- dr$sd_herd__Intercept
  prob <- function(nd, re_formula) posterior_linpred(fit, newdata = nd, re_formula = re_formula, transform = TRUE)
  eta <- function(nd, re_formula) posterior_linpred(fit, newdata = nd, re_formula = re_formula)
  at_period <- function(k) { nd <- cb; nd$period <- factor(k, levels = levels(cb$period)); nd }
  res <- list()
  for (mode in c("conditional", "zero", "integrated")) {
    rf <- if (mode == "conditional") NULL else NA
    get_p <- function(nd) {
      if (mode != "integrated") return(prob(nd, rf))
      e <- eta(nd, NA)
      integrated(plogis, e, matrix(sdh^2, nrow(e), ncol(e)))
    }
    P <- get_p(cb)
    byp <- t(apply(P, 1, function(r) avg_by(r, cb$period)))
    ref <- get_p(at_period("1"))
    cmp <- sapply(2:4, function(k) rowMeans(get_p(at_period(as.character(k))) - ref))
    res[[mode]] <- list(by_period = stats_cols(byp), contrast_period = stats_cols(cmp))
  }
  out <- list(id = "cbpp", brms_version = as.character(packageVersion("brms")),
              formula = "incidence | trials(size) ~ 0 + Intercept + period + (1 | herd)",
              priors = list(fixed = "Normal(0, 2.5)", sd = "HalfCauchy(1)"),
              draws = nrow(dr), seconds = proc.time()[["elapsed"]] - t0,
              hypotheses = hyps, hypothesis = hyp_table(h),
              b_Intercept = dr$b_Intercept, b_period2 = dr$b_period2, b_period3 = dr$b_period3,
              b_period4 = dr$b_period4,
              r2_conditional = stat(r2c), r2_marginal = stat(r2m), modes = res)
  dump(out, "brms_interpret_cbpp.json")
}

# lmerTest's Satterthwaite df (sleepstudy; penicillin, crossed), lme4's anova() (refit by ML) and Wald intervals
if (want("lmertest")) {
  suppressPackageStartupMessages(library(lmerTest))
  coefs <- function(m) {
    s <- summary(m)$coefficients
    list(names = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
         df = unname(s[, "df"]), t = unname(s[, "t value"]), p = unname(s[, "Pr(>|t|)"]))
  }
  m <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  pen <- lmerTest::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), lme4::Penicillin)
  L <- c(1, 10)
  ct <- contest(m, matrix(L, 1), joint = FALSE)
  m0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
  m1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- anova(m0, m1)
  ci <- confint(m1, method = "Wald")
  pr <- confint(m1, method = "profile", oldNames = FALSE)
  out <- list(lmerTest_version = as.character(packageVersion("lmerTest")),
              sleep = coefs(m), penicillin = coefs(pen),
              sleep_contrast = list(L = L, estimate = ct$Estimate, se = ct[["Std. Error"]], df = ct$df,
                                    t = ct[["t value"]], p = ct[["Pr(>|t|)"]]),
              anova = list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, deviance = a$deviance,
                           Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]]),
              confint_wald = list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])),
              confint_profile = list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2])))
  dump(out, "interpret_lmertest.json")
}
