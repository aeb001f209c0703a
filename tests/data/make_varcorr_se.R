# Asymptotic SEs of the variance components at lme4's estimates (expected information,
# Harville 1977: I_ij = tr(P V_i P V_j) / 2, P REML's projection or V^-1 under ML),
# delta method to SDs, correlations and sigma. Reference for RemlFit.varcorr_se
# (tests/test_results.py). Run from the repository root: Rscript tests/data/make_varcorr_se.R
library(lme4)
library(jsonlite)

vc_se <- function(fit) {
  X <- getME(fit, "X"); n <- nrow(X)
  s2 <- sigma(fit)^2
  cnms <- getME(fit, "cnms"); Ztl <- getME(fit, "Ztlist"); vc <- VarCorr(fit)
  spread <- list(); params <- list(); V <- s2 * diag(n)
  off <- 0
  for (ti in seq_along(cnms)) {
    # Ztlist has one matrix per column of each term (levels x n)
    k <- length(cnms[[ti]])
    A <- lapply(seq_len(k), function(a) t(as.matrix(Ztl[[off + a]])))
    off <- off + k
    spread[[ti]] <- A
    C <- vc[[ti]]
    for (a in seq_len(k)) for (b in seq_len(a)) {
      params[[length(params) + 1]] <- c(ti, a, b)
      dV <- if (a == b) A[[a]] %*% t(A[[b]]) else A[[a]] %*% t(A[[b]]) + A[[b]] %*% t(A[[a]])
      V <- V + C[a, b] * dV
    }
  }
  Vi <- solve(V)
  P <- if (isREML(fit)) Vi - Vi %*% X %*% solve(t(X) %*% Vi %*% X, t(X) %*% Vi) else Vi
  PdV <- lapply(params, function(p) {
    A <- spread[[p[1]]]; a <- p[2]; b <- p[3]
    dV <- if (a == b) A[[a]] %*% t(A[[b]]) else A[[a]] %*% t(A[[b]]) + A[[b]] %*% t(A[[a]])
    P %*% dV
  })
  PdV[[length(PdV) + 1]] <- P
  m <- length(PdV)
  info <- matrix(0, m, m)
  for (i in 1:m) for (j in 1:m) info[i, j] <- 0.5 * sum(PdV[[i]] * t(PdV[[j]]))
  cov <- solve(info)
  key <- sapply(params, paste, collapse = ",")
  rows <- list(); J <- NULL
  for (ti in seq_along(cnms)) {
    C <- vc[[ti]]; k <- nrow(C); sd <- sqrt(diag(C)); g <- names(vc)[ti]
    for (a in seq_len(k)) {
      j <- numeric(m); j[match(paste(ti, a, a, sep = ","), key)] <- 0.5 / sd[a]
      J <- rbind(J, j); rows[[length(rows) + 1]] <- list(group = g, kind = "sd", term1 = cnms[[ti]][a], term2 = "", value = sd[[a]])
    }
    if (k > 1) for (a in 1:(k - 1)) for (b in (a + 1):k) {
      r <- C[b, a] / (sd[a] * sd[b]); j <- numeric(m)
      j[match(paste(ti, b, a, sep = ","), key)] <- 1 / (sd[a] * sd[b])
      j[match(paste(ti, a, a, sep = ","), key)] <- -0.5 * r / C[a, a]
      j[match(paste(ti, b, b, sep = ","), key)] <- -0.5 * r / C[b, b]
      J <- rbind(J, j); rows[[length(rows) + 1]] <- list(group = g, kind = "corr", term1 = cnms[[ti]][a], term2 = cnms[[ti]][b], value = r)
    }
  }
  j <- numeric(m); j[m] <- 0.5 / sigma(fit); J <- rbind(J, j)
  rows[[length(rows) + 1]] <- list(group = "Residual", kind = "sd", term1 = "", term2 = "", value = sigma(fit))
  se <- sqrt(diag(J %*% cov %*% t(J)))
  for (i in seq_along(rows)) rows[[i]]$se <- se[[i]]
  rows
}

fits <- list(
  sleepstudy_reml = lmer(Reaction ~ Days + (Days | Subject), sleepstudy),
  sleepstudy_ml = lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE),
  dyestuff = lmer(Yield ~ 1 + (1 | Batch), Dyestuff),
  penicillin = lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
)
ref <- lapply(fits, vc_se)
ref$lme4_version <- as.character(packageVersion("lme4"))
write_json(ref, "tests/data/varcorr_se.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
