"""Slow float64 numpy/scipy references for the LiRA and base-model attacks, used by the tests.

Legend: S shadow models, N samples, L positions, T targets.

Each function refits everything from scratch for every target and sample,
selecting shadows explicitly, and scores with scipy densities. They share
definitions (equal-count rule, predictive variance, shrinkage formulas, the
smoothed-histogram marginal) with the fast code, but none of its machinery:
no sufficient statistics, no centering, no Cholesky chain, no padding.
"""

import math
from fractions import Fraction

import numpy as np
import scipy.stats

NUM_KNOTS = 512


def side_sets(keep_SxN, t, n):
    """Shadows of each side for target t and sample n under the equal-count rule."""
    sets = {}
    u = np.random.default_rng(0).random(keep_SxN.shape[1])[n]
    for side, on in (("in", keep_SxN[:, n]), ("out", ~keep_SxN[:, n])):
        members = list(np.flatnonzero(on))
        designated = members[min(int(u * len(members)), len(members) - 1)]
        drop = t if on[t] else designated
        sets[side] = [s for s in members if s != drop]
    return sets


def subset(num_samples, cov_samples):
    if cov_samples >= num_samples:
        return np.arange(num_samples)
    return np.unique(np.linspace(0, num_samples - 1, cov_samples).round().astype(np.int64))


def _floor(var, present):
    return np.maximum(var, 1e-12 * var[present].mean() + 1e-300)


# ------------------------------------------------------------------ univariate
def lira(x_SxNxL, keep_SxN, mask_NxL, targets, mode, variance, offline_test, direction):
    num_models, num_samples, length = x_SxNxL.shape
    mask = np.ones((num_samples, length), bool) if mask_NxL is None else mask_NxL
    a_SxN = np.array(
        [
            [x_SxNxL[s, n][mask[n]].astype(np.float64).mean() for n in range(num_samples)]
            for s in range(num_models)
        ]
    )
    out = np.zeros((len(targets), num_samples))
    for i, t in enumerate(targets):
        fit = {}
        for side in ("in", "out"):
            mus, vs, ks = [], [], []
            for n in range(num_samples):
                vals = a_SxN[side_sets(keep_SxN, t, n)[side], n]
                mus.append(vals.mean() if len(vals) else np.nan)  # k = 0: no fit, NaN score
                vs.append(vals.var(ddof=1) if len(vals) > 1 else 0.0)
                ks.append(len(vals))
            mus, vs, ks = map(np.array, (mus, vs, ks))
            if variance == "fixed":
                w = np.maximum(ks - 1, 0)
                vs = np.full_like(vs, np.sum(w * vs) / max(np.sum(w), 1))
            vs = np.maximum(vs, 1e-12 * (vs[ks > 0].mean() + 1e-300))
            fit[side] = (mus, np.sqrt(vs * (1 + 1 / ks)))
        a = a_SxN[t]
        if mode == "online":
            out[i] = scipy.stats.norm.logpdf(a, *fit["in"]) - scipy.stats.norm.logpdf(
                a, *fit["out"]
            )
        elif offline_test == "one_sided":
            mu, sd = fit["out"]
            out[i] = -scipy.stats.norm.logsf(direction * (a - mu) / sd)
        else:
            out[i] = -scipy.stats.norm.logpdf(a, *fit["out"])
    return out


def carlini_generate_ours(
    keep,
    scores,
    check_keep,
    check_scores,
    in_size=100000,
    out_size=100000,
    fix_variance=False,
    bug=True,
):
    """plot.py generate_ours, transcribed; ``bug`` keeps its std_out = np.std(dat_in)."""
    dat_in = []
    dat_out = []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(min(map(len, dat_in)), in_size)
    out_size = min(min(map(len, dat_out)), out_size)
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in = np.median(dat_in, 1)
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_in = np.std(dat_in)
        std_out = np.std(dat_in) if bug else np.std(dat_out)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    prediction = []
    answers = []
    for ans, sc in zip(check_keep, check_scores):
        pr_in = -scipy.stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        score = pr_in - pr_out
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def carlini_generate_ours_offline(
    keep, scores, check_keep, check_scores, in_size=100000, out_size=100000, fix_variance=False
):
    """plot.py generate_ours_offline, transcribed."""
    dat_in = []
    dat_out = []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    out_size = min(min(map(len, dat_out)), out_size)
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_out = np.std(dat_out)
    else:
        std_out = np.std(dat_out, 1)
    prediction = []
    answers = []
    for ans, sc in zip(check_keep, check_scores):
        score = scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def carlini(x_SxNxL, keep_SxN, mask_NxL, targets, mode, fix_variance, bug):
    """Member scores (= -prediction, as plot.py's sweep uses) with target t held out."""
    num_models, _num_samples, _ = x_SxNxL.shape
    if mask_NxL is None:
        a = x_SxNxL.astype(np.float64).mean(-1)
    else:
        a = np.where(mask_NxL, x_SxNxL.astype(np.float64), 0).sum(-1) / mask_NxL.sum(-1)
    scores = a[..., None]  # one "augmentation"
    out = []
    for t in targets:
        rest = [s for s in range(num_models) if s != t]
        if mode == "online":
            pred, _ = carlini_generate_ours(
                keep_SxN[rest],
                scores[rest],
                keep_SxN[[t]],
                scores[[t]],
                fix_variance=fix_variance,
                bug=bug,
            )
        else:
            pred, _ = carlini_generate_ours_offline(
                keep_SxN[rest], scores[rest], keep_SxN[[t]], scores[[t]], fix_variance=fix_variance
            )
        out.append(-np.array(pred))
    return np.array(out)


# ------------------------------------------------------------------ sequence-aware
def _shrink_rho(corr, present, n_eff, shrinkage, fourth):
    if not isinstance(shrinkage, str):
        return float(shrinkage)
    p = present.sum()
    off2 = np.sum((corr - np.eye(len(corr))) ** 2)
    if off2 <= 0 or p < 2:
        return 1.0
    tr2 = p + off2
    if shrinkage == "oas":
        return min(1.0, ((1 - 2 / p) * tr2 + p * p) / ((n_eff + 1 - 2 / p) * off2))
    beta = (fourth / n_eff - tr2) / n_eff
    return min(max(beta, 0.0), off2) / off2


def _corr(cross, dof):
    present = np.diag(dof) > 0
    cov = np.where(dof > 0, cross / np.where(dof > 0, dof, 1), 0.0)
    sd = np.sqrt(np.maximum(np.diag(cov), 0))
    sd = np.where(present & (sd > 0), sd, 1.0)
    corr = cov / np.outer(sd, sd)
    corr = np.where(np.outer(present, present), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    return corr, sd, present


def _marginal(u_values_per_l, length):
    tables = []
    for ell in range(length):
        u = np.asarray(u_values_per_l[ell], np.float64)
        n = max(len(u), 1)
        mean = u.mean() if len(u) else 0.0
        sd = u.std() if len(u) else 1.0
        sd = sd if sd > 0 else 1.0
        h = 1.06 * sd * n ** (-0.2)
        bound = (np.abs(u).max() if len(u) else 0.0) + 6 * h
        delta = 2 * bound / (NUM_KNOTS - 1)
        pos = (np.clip(u, -bound, bound) + bound) / delta
        i = np.clip(np.floor(pos), 0, NUM_KNOTS - 2).astype(int)
        frac = pos - i
        hist = np.zeros(NUM_KNOTS)
        np.add.at(hist, i, 1 - frac)
        np.add.at(hist, i + 1, frac)
        hist /= n
        j = np.arange(NUM_KNOTS)
        kde = scipy.stats.norm.cdf((j[None, :] - j[:, None]) * delta / h).T @ hist
        grid = -bound + j * delta
        alpha = 1 / (n + 1)
        cdf = (1 - alpha) * kde + alpha * scipy.stats.norm.cdf((grid - mean) / sd)
        tables.append((cdf, bound, delta))
    return tables


def _eval_marginal(table, u):
    cdf, bound, delta = table
    pos = (np.clip(u, -bound, bound) + bound) / delta
    i = int(np.clip(np.floor(pos), 0, NUM_KNOTS - 2))
    frac = pos - i
    f = np.clip(cdf[i] + frac * (cdf[i + 1] - cdf[i]), 1e-300, 1 - 1e-16)
    return scipy.stats.norm.ppf(f), math.log(max(cdf[i + 1] - cdf[i], 1e-300) / delta)


def _full_correlation(x_SxL, sets, mu, p, pool, shrinkage):
    """One sample's own correlation of its pooled side residuals, on positions p, shrunk."""
    rows = np.concatenate([x_SxL[sets[s]][:, p] - mu[s][p] for s in pool])
    dof = sum(len(sets[s]) - 1 for s in pool)
    sd = np.sqrt(np.diag(rows.T @ rows) / dof)
    sd = np.where(sd > 0, sd, 1.0)
    corr = rows.T @ rows / dof / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    fourth = np.sum(np.sum((rows / sd) ** 2, -1) ** 2)
    rho = _shrink_rho(corr, np.ones(len(p), bool), dof, shrinkage, fourth)
    return (1 - rho) * corr + rho * np.eye(len(p))


def _chain(logpdf, values):
    """Per-position chain-rule terms log p(v_j | v_<j) from a joint log density."""
    prev, terms = 0.0, []
    for j in range(1, len(values) + 1):
        cur = logpdf(j)
        terms.append(cur - prev)
        prev = cur
    return np.array(terms)


def seq(
    x_SxNxL,
    keep_SxN,
    mask_NxL,
    targets,
    cov="hetero",
    marginal="gaussian",
    shrinkage="oas",
    tied=False,
    mode="online",
    direction=1.0,
    cov_samples=2048,
    marginal_samples=512,
):
    """Returns scores_TxN and evidence_TxNxL by brute force."""
    _num_models, num_samples, length = x_SxNxL.shape
    x = x_SxNxL.astype(np.float64)
    mask = np.ones((num_samples, length), bool) if mask_NxL is None else mask_NxL
    sub = subset(num_samples, cov_samples)
    if cov == "copula" and marginal == "empirical":
        sub = sub[subset(len(sub), marginal_samples)]
    scores = np.zeros((len(targets), num_samples))
    evidence = np.zeros((len(targets), num_samples, length))
    for ti, t in enumerate(targets):
        sets = [side_sets(keep_SxN, t, n) for n in range(num_samples)]
        mu, var, k = {}, {}, {}
        for side in ("in", "out"):
            mu[side] = np.array([x[sets[n][side], n].mean(0) for n in range(num_samples)])
            var[side] = np.array([x[sets[n][side], n].var(0, ddof=1) for n in range(num_samples)])
            k[side] = np.array([len(sets[n][side]) for n in range(num_samples)], float)
        if tied:
            pooled = (k["in"] - 1)[:, None] * var["in"] + (k["out"] - 1)[:, None] * var["out"]
            pooled /= (k["in"] + k["out"] - 2)[:, None]
            var = {s: pooled for s in var}
        var = {s: _floor(np.where(mask, v, 0), mask) for s, v in var.items()}
        models = {}
        for side in ("in", "out"):
            mat_sides = ("in", "out") if tied else (side,)
            if cov in ("diag", "full"):
                models[side] = None
                continue
            cross, dof, fourth, u_pool = (
                np.zeros((length, length)),
                np.zeros((length, length)),
                0.0,
                [[] for _ in range(length)],
            )
            rows = []
            for s_ in mat_sides:
                for n in sub:
                    m = mask[n].astype(float)
                    kk = k[s_][n]
                    for s in sets[n][s_]:
                        r = (x[s, n] - mu[s_][n]) * m
                        if cov == "pooled":
                            rows.append(r)
                            dof_w = kk - 1
                        elif marginal == "gaussian":
                            rows.append(r / np.sqrt(var[s_][n]))
                            dof_w = kk - 1
                        else:
                            u = r / np.sqrt(var[s_][n]) * np.sqrt((kk + 1) / max(kk - 1, 1))
                            rows.append(u)
                            for ell in np.flatnonzero(mask[n]):
                                u_pool[ell].append(u[ell])
                            dof_w = None
                    if cov == "copula" and marginal == "empirical":
                        total = sum(len(sets[n][q]) for q in mat_sides)
                        if s_ == mat_sides[0]:
                            dof += total * np.outer(m, m)
                    else:
                        dof += dof_w * np.outer(m, m)
            rows = np.array(rows)
            if cov == "copula" and marginal == "empirical":
                tables = _marginal(u_pool, length)
                zrows = np.zeros_like(rows)
                # rows were appended sample-major per side; rebuild masks alongside
                ridx = 0
                for s_ in mat_sides:
                    for n in sub:
                        for _ in sets[n][s_]:
                            for ell in np.flatnonzero(mask[n]):
                                zrows[ridx, ell] = _eval_marginal(tables[ell], rows[ridx, ell])[0]
                            ridx += 1
                rows = zrows
                models_tables = tables
            cross = rows.T @ rows
            corr, sd, present = _corr(cross, dof)
            n_eff = np.diag(dof)[present].mean()
            if cov == "pooled":
                fourth = np.sum(np.sum((rows / sd) ** 2, -1) ** 2)
            else:
                fourth = np.sum(np.sum(rows**2, -1) ** 2)
            rho = _shrink_rho(corr, present, n_eff, shrinkage, fourth)
            corr = (1 - rho) * corr + rho * np.eye(length)
            if cov == "pooled":
                models[side] = corr * np.outer(sd, sd)
            elif marginal == "gaussian":
                models[side] = corr
            else:
                models[side] = (corr, models_tables)
        for n in range(num_samples):
            p = np.flatnonzero(mask[n])
            terms = {}
            gls_terms = None
            for side in ("in", "out"):
                xs = x[t, n, p]
                m_ = mu[side][n, p]
                kk = k[side][n]
                sd_pred = np.sqrt(var[side][n, p] * (1 + 1 / kk))
                if cov == "diag":
                    c = np.diag(sd_pred**2)
                elif cov == "full":
                    pool = ("in", "out") if tied else (side,)
                    r = _full_correlation(
                        x[:, n], sets[n], {s: mu[s][n] for s in pool}, p, pool, shrinkage
                    )
                    c = r * np.outer(sd_pred, sd_pred)
                elif cov == "pooled":
                    c = models[side][np.ix_(p, p)] * (1 + 1 / kk)
                elif marginal == "gaussian":
                    c = models[side][np.ix_(p, p)] * np.outer(sd_pred, sd_pred)
                if cov != "copula" or marginal == "gaussian":

                    def lp(j, c=c, xs=xs, m_=m_):
                        return scipy.stats.multivariate_normal.logpdf(xs[:j], m_[:j], c[:j, :j])

                    terms[side] = _chain(lp, xs)
                    if side == "out":
                        ones = np.ones(len(p))
                        q = np.linalg.solve(c, ones)
                        gls_terms = direction * q * (xs - m_) / np.sqrt(ones @ q)
                else:
                    corr, tables = models[side]
                    sd = np.sqrt(var[side][n, p])
                    u = (xs - m_) / sd
                    zl = [_eval_marginal(tables[ell], ui) for ell, ui in zip(p, u)]
                    z = np.array([a for a, _ in zl])
                    logf = np.array([b for _, b in zl]) - np.log(sd)
                    r = corr[np.ix_(p, p)]

                    def lp(j, r=r, z=z):
                        return scipy.stats.multivariate_normal.logpdf(z[:j], np.zeros(j), r[:j, :j])

                    terms[side] = _chain(lp, z) - scipy.stats.norm.logpdf(z) + logf
                    if side == "out":
                        a = 1 / sd
                        q = np.linalg.solve(r, a)
                        gls_terms = direction * q * z / np.sqrt(a @ q)
            if mode == "online":
                e = terms["in"] - terms["out"]
            elif mode == "offline":
                e = -terms["out"]
            else:
                e = gls_terms
            evidence[ti, n, p] = e
            scores[ti, n] = e.sum()
    return scores, evidence


# ------------------------------------------------------------------ base-model reference
def baseref(x_SxNxL, base_NxL, mask_NxL, targets, statistic="loss", agg="mean", k=0.1):
    """Per target and sample, the present positions' gains over the base, averaged or top-k.

    The top-k count is ceil(k * present) in exact decimal arithmetic (k as written).
    """
    num_samples, length = base_NxL.shape
    mask = np.ones((num_samples, length), bool) if mask_NxL is None else mask_NxL
    out = np.zeros((len(targets), num_samples))
    for i, t in enumerate(targets):
        for n in range(num_samples):
            gains = []
            for position in np.flatnonzero(mask[n]):
                target, base = float(x_SxNxL[t, n, position]), float(base_NxL[n, position])
                gains.append(base - target if statistic == "loss" else target - base)
            if agg == "mean":
                out[i, n] = sum(gains) / len(gains)
            else:
                count = max(1, math.ceil(Fraction(str(k)) * len(gains)))
                out[i, n] = sum(sorted(gains, reverse=True)[:count]) / count
    return out


def profile_weights(x_SxNxL, keep_SxN, mask_NxL, t, bins, difficulty_NxL=None, token_NxL=None):
    """Profile LiRA's token weights for target t by loops over the other models.

    A token's bin is its difficulty quantile bin (of ``difficulty_NxL``, else
    of the other models' mean), paired with its token id when ``token_NxL``
    is given; bins are dictionary keys, so no id range is assumed.
    """
    num_models, num_samples, length = x_SxNxL.shape
    others = [s for s in range(num_models) if s != t]
    mean = np.zeros((num_samples, length))
    shift = np.zeros((num_samples, length))
    noise = np.zeros((num_samples, length))
    for n in range(num_samples):
        ins = [s for s in others if keep_SxN[s, n]]
        outs = [s for s in others if not keep_SxN[s, n]]
        for position in range(length):
            values_in = np.array([x_SxNxL[s, n, position] for s in ins], dtype=np.float64)
            values_out = np.array([x_SxNxL[s, n, position] for s in outs], dtype=np.float64)
            mean[n, position] = np.concatenate([values_in, values_out]).mean()
            shift[n, position] = values_in.mean() - values_out.mean()
            noise[n, position] = 0.5 * (values_in.var(ddof=1) + values_out.var(ddof=1))
    feature = mean if difficulty_NxL is None else np.asarray(difficulty_NxL, np.float64)
    edges = np.quantile(feature[mask_NxL], np.linspace(0, 1, bins + 1)[1:-1])
    groups = {}
    for n, position in zip(*np.nonzero(mask_NxL)):
        key = int(np.searchsorted(edges, feature[n, position], side="right"))
        if token_NxL is not None:
            key = (key, int(token_NxL[n, position]))
        groups.setdefault(key, []).append((n, position))
    weights = np.zeros((num_samples, length))
    for members in groups.values():
        rows, cols = np.array(members).T
        weights[rows, cols] = shift[rows, cols].mean() / noise[rows, cols].mean()
    return weights


# ------------------------------------------------------------------ sparse
def _sparse_terms(x, keep_SxN, mask, t, direction, mode, variance):
    """Target t's per-token LOO evidence (z offline, the LLR online), N x L, sample by sample."""
    num_samples, length = mask.shape
    fit = {}
    for side in ("in", "out"):
        mu = np.zeros((num_samples, length))
        var = np.zeros((num_samples, length))
        ks = np.zeros(num_samples)
        for n in range(num_samples):
            vals = x[side_sets(keep_SxN, t, n)[side], n]  # k x L
            mu[n], ks[n] = vals.mean(0), len(vals)
            var[n] = vals.var(0, ddof=1) if len(vals) > 1 else 0.0
        if variance == "fixed":
            for pos in range(length):
                on = mask[:, pos]
                w = ks[on] - 1
                var[:, pos] = np.sum(w * var[on, pos]) / max(np.sum(w), 1.0)
        var = np.maximum(var, 1e-12 * var[mask].mean() + 1e-300)
        fit[side] = (mu, np.sqrt(var * (1 + 1 / ks[:, None])))
    if mode == "offline":
        return direction * (x[t] - fit["out"][0]) / fit["out"][1]
    return scipy.stats.norm.logpdf(x[t], *fit["in"]) - scipy.stats.norm.logpdf(x[t], *fit["out"])


def sparse(
    x_SxNxL, keep_SxN, mask_NxL, targets, statistic, mode, variance, agg, k, alpha, null="gaussian"
):
    """Per-token LOO evidence and its top-k mean / higher criticism, sample by sample."""
    num_models, num_samples, length = x_SxNxL.shape
    mask = np.ones((num_samples, length), bool) if mask_NxL is None else mask_NxL
    direction = 1.0 if statistic == "logit" else -1.0
    x = x_SxNxL.astype(np.float64)
    terms_of = [
        _sparse_terms(x, keep_SxN, mask, s, direction, mode, variance)
        if null == "empirical" or s in targets
        else None
        for s in range(num_models)
    ]
    out = np.zeros((len(targets), num_samples))
    for i, t in enumerate(targets):
        for n in range(num_samples):
            terms = terms_of[t][n][mask[n]]
            if null == "empirical":  # each position's null: models s != t, OUT samples n' != n
                p = np.empty(len(terms))
                for j, pos in enumerate(np.flatnonzero(mask[n])):
                    values = [
                        terms_of[s][m, pos]
                        for s in range(num_models)
                        for m in range(num_samples)
                        if s != t and m != n and not keep_SxN[s, m] and mask[m, pos]
                    ]
                    p[j] = (1 + np.sum(np.asarray(values) >= terms[j])) / (2 + len(values))
                terms = scipy.stats.norm.isf(p)
            m = len(terms)
            if agg == "hc":
                p = np.clip(np.sort(scipy.stats.norm.sf(terms)), 1e-300, 1 - 1e-16)
                upto = max(1, math.floor(round(alpha * m, 9)))
                ii = np.arange(1, upto + 1)
                pp = p[:upto]
                out[i, n] = np.max(np.sqrt(m) * (ii / m - pp) / np.sqrt(pp * (1 - pp)))
            else:
                count = m if agg == "mean" else max(1, math.ceil(round(k * m, 9)))
                out[i, n] = np.sort(terms)[::-1][:count].mean()
    return out
