//! The WGSL bodies of the training kernels, with the fields of their uniform
//! structs (after `n` and `xs`). See the module above for the conventions.

use super::Kind;

pub(super) const BINDINGS: &str = "\
@group(0) @binding(0) var<storage, read_write> prm: array<f32>;
@group(0) @binding(1) var<storage, read_write> grd: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
";

pub(super) const UPDATE_BINDINGS: &str = "\
@group(0) @binding(0) var<storage, read_write> prm: array<f32>;
@group(0) @binding(1) var<storage, read_write> grd: array<f32>;
@group(0) @binding(2) var<storage, read_write> s1: array<f32>;
@group(0) @binding(3) var<storage, read_write> s2: array<f32>;
@group(0) @binding(4) var<storage, read_write> ema: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<uniform> p: P;
";

pub(super) const COMMON: &str = "
const NONE: u32 = 0xffffffffu;

fn sigm(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Compensated (Kahan) summation: the running sum in .x, the lost low bits in .y.
fn kadd(k: ptr<function, vec2<f32>>, v: f32) {
    let y = v - (*k).y;
    let t = (*k).x + y;
    (*k).y = (t - (*k).x) - y;
    (*k).x = t;
}

// 0 none, 1 swish, 2 relu, 3 relu6, 4 sigmoid
fn act_fwd(a: u32, x: f32) -> f32 {
    switch a {
        case 1u: { return x * sigm(x); }
        case 2u: { return max(x, 0.0); }
        case 3u: { return clamp(x, 0.0, 6.0); }
        case 4u: { return sigm(x); }
        default: { return x; }
    }
}

// d·act'(x); ReLU and ReLU6 pass the gradient only strictly inside their linear piece.
fn act_grad(a: u32, x: f32, d: f32) -> f32 {
    switch a {
        case 1u: {
            let s = sigm(x);
            return d * (s + x * s * (1.0 - s));
        }
        case 2u: { return select(0.0, d, x > 0.0); }
        case 3u: { return select(0.0, d, x > 0.0 && x < 6.0); }
        case 4u: {
            let s = sigm(x);
            return d * s * (1.0 - s);
        }
        default: { return d; }
    }
}

";

/// The start of a kernel with one invocation per item `id < p.n`.
macro_rules! items {
    ($body:literal) => {
        concat!(
            "@compute @workgroup_size(64)\n",
            "fn main(@builtin(global_invocation_id) gid: vec3<u32>) {\n",
            "    let id = gid.x + gid.y * p.xs;\n",
            "    if id >= p.n {\n        return;\n    }\n",
            $body,
            "}\n"
        )
    };
}

const TREE: &str = "
var<workgroup> sa: array<f32, 64>;
var<workgroup> sb: array<f32, 64>;

// Sums sa and sb over the workgroup in a fixed tree: the same bits every run.
fn tree(t: u32) {
    workgroupBarrier();
    for (var h = 32u; h > 0u; h = h >> 1u) {
        if t < h {
            sa[t] = sa[t] + sa[t + h];
            sb[t] = sb[t] + sb[t + h];
        }
        workgroupBarrier();
    }
}
";

const CONV_FWD: &str = items!(
    "
    let o = id % p.co;
    let r = id / p.co;
    let ox = r % p.ow;
    let oy = (r / p.ow) % p.oh;
    let img = r / (p.ow * p.oh);
    let kk = p.k * p.k;
    var acc = 0.0;
    if p.k == 1u && p.s == 1u && p.pt == 0u && p.pl == 0u {
        // Pointwise: the input row is the output row.
        let xb = p.x + r * p.ci;
        let wb = p.w + o * p.ci;
        for (var c = 0u; c < p.ci; c += 1u) {
            acc += buf[xb + c] * prm[wb + c];
        }
        buf[p.y + id] = acc;
        return;
    }
    for (var ky = 0u; ky < p.k; ky += 1u) {
        let iy = i32(oy * p.s + ky) - i32(p.pt);
        if iy < 0 || iy >= i32(p.ih) {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx += 1u) {
            let ix = i32(ox * p.s + kx) - i32(p.pl);
            if ix < 0 || ix >= i32(p.iw) {
                continue;
            }
            let xb = p.x + ((img * p.ih + u32(iy)) * p.iw + u32(ix)) * p.ci;
            let wb = p.w + o * p.ci * kk + ky * p.k + kx;
            for (var c = 0u; c < p.ci; c += 1u) {
                acc += buf[xb + c] * prm[wb + c * kk];
            }
        }
    }
    buf[p.y + id] = acc;
"
);

const DW_FWD: &str = items!(
    "
    let c = id % p.c;
    let r = id / p.c;
    let ox = r % p.ow;
    let oy = (r / p.ow) % p.oh;
    let img = r / (p.ow * p.oh);
    var acc = 0.0;
    for (var ky = 0u; ky < p.k; ky += 1u) {
        let iy = i32(oy * p.s + ky) - i32(p.pt);
        if iy < 0 || iy >= i32(p.ih) {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx += 1u) {
            let ix = i32(ox * p.s + kx) - i32(p.pl);
            if ix < 0 || ix >= i32(p.iw) {
                continue;
            }
            let xv = buf[p.x + ((img * p.ih + u32(iy)) * p.iw + u32(ix)) * p.c + c];
            acc += xv * prm[p.w + (c * p.k + ky) * p.k + kx];
        }
    }
    buf[p.y + id] = acc;
"
);

const BN_STATS: &str = "
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ch = wg.x + wg.y * p.xs;
    let ok = ch < p.n;
    var s = vec2<f32>(0.0);
    if ok {
        for (var r = t; r < p.rows; r += 64u) {
            kadd(&s, buf[p.z + r * p.c + ch]);
        }
    }
    sa[t] = s.x;
    sb[t] = 0.0;
    tree(t);
    let mean = sa[0] / f32(p.rows);
    workgroupBarrier();
    var q = vec2<f32>(0.0);
    if ok {
        for (var r = t; r < p.rows; r += 64u) {
            let d = buf[p.z + r * p.c + ch] - mean;
            kadd(&q, d * d);
        }
    }
    sa[t] = 0.0;
    sb[t] = q.x;
    tree(t);
    if ok && t == 0u {
        let v = sb[0] / f32(p.rows);
        buf[p.mean + ch] = mean;
        buf[p.istd + ch] = 1.0 / sqrt(v + bitcast<f32>(p.eps));
        if p.rm != NONE {
            let m = bitcast<f32>(p.momentum);
            prm[p.rm + ch] = (1.0 - m) * prm[p.rm + ch] + m * mean;
            prm[p.rv + ch] = (1.0 - m) * prm[p.rv + ch] + m * v * bitcast<f32>(p.unbias);
        }
    }
}
";

const BN_ACT: &str = items!(
    "
    let ch = id % p.c;
    let xh = (buf[p.z + id] - buf[p.mean + ch]) * buf[p.istd + ch];
    buf[p.y + id] = act_fwd(p.act, prm[p.gamma + ch] * xh + prm[p.beta + ch]);
"
);

const POOL: &str = items!(
    "
    let img = id / p.c;
    let ch = id % p.c;
    var s = vec2<f32>(0.0);
    for (var px = 0u; px < p.hw; px += 1u) {
        kadd(&s, buf[p.x + (img * p.hw + px) * p.c + ch]);
    }
    buf[p.y + id] = s.x / f32(p.hw);
"
);

const LINEAR: &str = items!(
    "
    let r = id / p.fout;
    let j = id % p.fout;
    var acc = 0.0;
    for (var l = 0u; l < p.fin; l += 1u) {
        acc += prm[p.w + j * p.fin + l] * buf[p.x + r * p.fin + l];
    }
    acc += prm[p.b + j];
    if p.pre != NONE {
        buf[p.pre + id] = acc;
    }
    buf[p.y + id] = act_fwd(p.act, acc);
"
);

const MUL: &str = items!(
    "
    buf[p.y + id] = buf[p.x + id] * buf[p.m + id];
"
);

const SE_MUL: &str = items!(
    "
    let ch = id % p.c;
    let img = id / (p.hw * p.c);
    buf[p.y + id] = buf[p.x + id] * buf[p.gate + img * p.c + ch];
"
);

const RESIDUAL: &str = items!(
    "
    var v = buf[p.h + id];
    if p.scale != NONE {
        v *= buf[p.scale + id / p.per];
    }
    if p.skip != NONE {
        v += buf[p.skip + id];
    }
    buf[p.y + id] = v;
"
);

const LOSS: &str = items!(
    "
    let zb = p.logits + id * p.classes;
    let tb = p.tgt + id * p.classes;
    var mx = buf[zb];
    for (var k = 1u; k < p.classes; k += 1u) {
        mx = max(mx, buf[zb + k]);
    }
    var sum = 0.0;
    var total = 0.0;
    for (var k = 0u; k < p.classes; k += 1u) {
        sum += exp(buf[zb + k] - mx);
        total += buf[tb + k];
    }
    let lse = log(sum) + mx;
    var loss = 0.0;
    for (var k = 0u; k < p.classes; k += 1u) {
        let lp = buf[zb + k] - lse;
        let t = buf[tb + k];
        loss -= t * lp;
        buf[p.dlogits + id * p.classes + k] = (exp(lp) * total - t) * bitcast<f32>(p.scale);
    }
    buf[p.loss + id] = loss;
"
);

const LINEAR_BWD: &str = items!(
    "
    let oi = p.fout * p.fin;
    if id < oi {
        let j = id / p.fin;
        let l = id % p.fin;
        var s = vec2<f32>(0.0);
        for (var r = 0u; r < p.rows; r += 1u) {
            kadd(&s, buf[p.dy + r * p.fout + j] * buf[p.x + r * p.fin + l]);
        }
        grd[p.dw + id] = s.x;
        return;
    }
    if id < oi + p.fout {
        let j = id - oi;
        var s = vec2<f32>(0.0);
        for (var r = 0u; r < p.rows; r += 1u) {
            kadd(&s, buf[p.dy + r * p.fout + j]);
        }
        grd[p.db + j] = s.x;
        return;
    }
    let e = id - oi - p.fout;
    let r = e / p.fin;
    let l = e % p.fin;
    var s = vec2<f32>(0.0);
    for (var j = 0u; j < p.fout; j += 1u) {
        kadd(&s, buf[p.dy + r * p.fout + j] * prm[p.w + j * p.fin + l]);
    }
    if p.epi == 1u {
        s.x *= buf[p.aux + e];
    } else if p.epi == 2u {
        s.x = act_grad(p.act, buf[p.aux + e], s.x);
    }
    buf[p.dx + e] = s.x;
"
);

const POOL_BWD: &str = items!(
    "
    let ch = id % p.c;
    let img = id / (p.hw * p.c);
    buf[p.dx + id] = buf[p.dp + img * p.c + ch] * (1.0 / f32(p.hw));
"
);

const BN_BWD_SUMS: &str = "
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ch = wg.x + wg.y * p.xs;
    let ok = ch < p.n;
    var s = vec2<f32>(0.0);
    var q = vec2<f32>(0.0);
    if ok {
        let mean = buf[p.mean + ch];
        let istd = buf[p.istd + ch];
        let gamma = prm[p.gamma + ch];
        let beta = prm[p.beta + ch];
        for (var r = t; r < p.rows; r += 64u) {
            let i = r * p.c + ch;
            let xh = (buf[p.z + i] - mean) * istd;
            let d = act_grad(p.act, gamma * xh + beta, buf[p.dy + i]);
            kadd(&s, d);
            kadd(&q, d * xh);
        }
    }
    sa[t] = s.x;
    sb[t] = q.x;
    tree(t);
    if ok && t == 0u {
        grd[p.dbeta + ch] = sa[0];
        grd[p.dgamma + ch] = sb[0];
        buf[p.sums + ch] = sa[0];
        buf[p.sums + p.c + ch] = sb[0];
    }
}
";

const BN_BWD_DZ: &str = items!(
    "
    let ch = id % p.c;
    let istd = buf[p.istd + ch];
    let gamma = prm[p.gamma + ch];
    let xh = (buf[p.z + id] - buf[p.mean + ch]) * istd;
    let d = act_grad(p.act, gamma * xh + prm[p.beta + ch], buf[p.dy + id]);
    let rows = f32(p.rows);
    let v = rows * d - buf[p.sums + ch] - xh * buf[p.sums + p.c + ch];
    buf[p.dz + id] = gamma * istd / rows * v;
"
);

const CONV_BWD_W: &str = items!(
    "
    let kx = id % p.k;
    let ky = (id / p.k) % p.k;
    let c = (id / (p.k * p.k)) % p.ci;
    let o = id / (p.k * p.k * p.ci);
    var s = 0.0;
    if p.k == 1u && p.s == 1u && p.pt == 0u && p.pl == 0u {
        // Pointwise: dW = dzᵀ·x over the rows.
        let rows = p.batch * p.oh * p.ow;
        for (var r = 0u; r < rows; r += 1u) {
            s += buf[p.dz + r * p.co + o] * buf[p.x + r * p.ci + c];
        }
        grd[p.dw + id] = s;
        return;
    }
    for (var img = 0u; img < p.batch; img += 1u) {
        for (var oy = 0u; oy < p.oh; oy += 1u) {
            let iy = i32(oy * p.s + ky) - i32(p.pt);
            if iy < 0 || iy >= i32(p.ih) {
                continue;
            }
            for (var ox = 0u; ox < p.ow; ox += 1u) {
                let ix = i32(ox * p.s + kx) - i32(p.pl);
                if ix < 0 || ix >= i32(p.iw) {
                    continue;
                }
                let d = buf[p.dz + ((img * p.oh + oy) * p.ow + ox) * p.co + o];
                s += d * buf[p.x + ((img * p.ih + u32(iy)) * p.iw + u32(ix)) * p.ci + c];
            }
        }
    }
    grd[p.dw + id] = s;
"
);

const CONV_BWD_X: &str = items!(
    "
    let c = id % p.ci;
    let r = id / p.ci;
    let ix = r % p.iw;
    let iy = (r / p.iw) % p.ih;
    let img = r / (p.iw * p.ih);
    let kk = p.k * p.k;
    var s = 0.0;
    if p.k == 1u && p.s == 1u && p.pt == 0u && p.pl == 0u {
        // Pointwise: dx = dz·W on the same row.
        let db = p.dz + r * p.co;
        for (var o = 0u; o < p.co; o += 1u) {
            s += buf[db + o] * prm[p.w + o * p.ci + c];
        }
        if p.add != NONE {
            s += buf[p.add + id];
        }
        buf[p.dx + id] = s;
        return;
    }
    for (var ky = 0u; ky < p.k; ky += 1u) {
        let ty = i32(iy + p.pt) - i32(ky);
        if ty < 0 || ty % i32(p.s) != 0 {
            continue;
        }
        let oy = u32(ty) / p.s;
        if oy >= p.oh {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx += 1u) {
            let tx = i32(ix + p.pl) - i32(kx);
            if tx < 0 || tx % i32(p.s) != 0 {
                continue;
            }
            let ox = u32(tx) / p.s;
            if ox >= p.ow {
                continue;
            }
            let db = p.dz + ((img * p.oh + oy) * p.ow + ox) * p.co;
            let wb = p.w + c * kk + ky * p.k + kx;
            for (var o = 0u; o < p.co; o += 1u) {
                s += buf[db + o] * prm[wb + o * p.ci * kk];
            }
        }
    }
    if p.add != NONE {
        s += buf[p.add + id];
    }
    buf[p.dx + id] = s;
"
);

const DW_BWD_W: &str = items!(
    "
    let kx = id % p.k;
    let ky = (id / p.k) % p.k;
    let c = id / (p.k * p.k);
    var s = vec2<f32>(0.0);
    for (var img = 0u; img < p.batch; img += 1u) {
        for (var oy = 0u; oy < p.oh; oy += 1u) {
            let iy = i32(oy * p.s + ky) - i32(p.pt);
            if iy < 0 || iy >= i32(p.ih) {
                continue;
            }
            for (var ox = 0u; ox < p.ow; ox += 1u) {
                let ix = i32(ox * p.s + kx) - i32(p.pl);
                if ix < 0 || ix >= i32(p.iw) {
                    continue;
                }
                let d = buf[p.dz + ((img * p.oh + oy) * p.ow + ox) * p.c + c];
                kadd(&s, d * buf[p.x + ((img * p.ih + u32(iy)) * p.iw + u32(ix)) * p.c + c]);
            }
        }
    }
    grd[p.dw + id] = s.x;
"
);

const DW_BWD_X: &str = items!(
    "
    let c = id % p.c;
    let r = id / p.c;
    let ix = r % p.iw;
    let iy = (r / p.iw) % p.ih;
    let img = r / (p.iw * p.ih);
    var s = 0.0;
    for (var ky = 0u; ky < p.k; ky += 1u) {
        let ty = i32(iy + p.pt) - i32(ky);
        if ty < 0 || ty % i32(p.s) != 0 {
            continue;
        }
        let oy = u32(ty) / p.s;
        if oy >= p.oh {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx += 1u) {
            let tx = i32(ix + p.pl) - i32(kx);
            if tx < 0 || tx % i32(p.s) != 0 {
                continue;
            }
            let ox = u32(tx) / p.s;
            if ox >= p.ow {
                continue;
            }
            let d = buf[p.dz + ((img * p.oh + oy) * p.ow + ox) * p.c + c];
            s += d * prm[p.w + (c * p.k + ky) * p.k + kx];
        }
    }
    if p.add != NONE {
        s += buf[p.add + id];
    }
    buf[p.dx + id] = s;
"
);

const SE_GATE: &str = items!(
    "
    let img = id / p.c;
    let ch = id % p.c;
    var s = vec2<f32>(0.0);
    for (var px = 0u; px < p.hw; px += 1u) {
        let i = (img * p.hw + px) * p.c + ch;
        kadd(&s, buf[p.dy + i] * buf[p.x + i]);
    }
    let g = buf[p.gate + id];
    buf[p.out + id] = s.x * g * (1.0 - g);
"
);

const SE_BWD_X: &str = items!(
    "
    let ch = id % p.c;
    let img = id / (p.hw * p.c);
    let j = img * p.c + ch;
    buf[p.dx + id] = buf[p.dy + id] * buf[p.gate + j] + buf[p.dp + j] * (1.0 / f32(p.hw));
"
);

const UPDATE: &str = items!(
    "
    let bit = 1u << (id & 31u);
    let train = (mask[id >> 5u] & bit) != 0u;
    let decay = (mask[p.words + (id >> 5u)] & bit) != 0u;
    var v = prm[id];
    if train {
        let lr = bitcast<f32>(p.lr);
        let wd = select(0.0, bitcast<f32>(p.wd), decay);
        let mom = bitcast<f32>(p.momentum);
        let eps = bitcast<f32>(p.eps);
        switch p.kind {
            case 0u: {
                let g = grd[id] + wd * v;
                if mom == 0.0 {
                    v = v - lr * g;
                } else {
                    var b = g;
                    if p.first == 0u {
                        b = mom * s1[id] + g;
                    }
                    s1[id] = b;
                    var d = b;
                    if p.nesterov != 0u {
                        d = g + mom * b;
                    }
                    v = v - lr * d;
                }
            }
            case 1u: {
                let g = grd[id] + wd * v;
                let s = s1[id] + (1.0 - bitcast<f32>(p.alpha)) * (g * g - s1[id]);
                s1[id] = s;
                let st = lr * g / sqrt(s + eps);
                if mom > 0.0 {
                    let b = mom * s2[id] + st;
                    s2[id] = b;
                    v = v - b;
                } else {
                    v = v - st;
                }
            }
            default: {
                let g = grd[id];
                let b1 = bitcast<f32>(p.beta1);
                let b2 = bitcast<f32>(p.beta2);
                v = v * (1.0 - lr * wd);
                let m = b1 * s1[id] + (1.0 - b1) * g;
                let q = b2 * s2[id] + (1.0 - b2) * g * g;
                s1[id] = m;
                s2[id] = q;
                v = v - lr / bitcast<f32>(p.c1) * m / (sqrt(q) / bitcast<f32>(p.c2) + eps);
            }
        }
        prm[id] = v;
    }
    if p.ema != 0u {
        let d = bitcast<f32>(p.ema_decay);
        ema[id] = d * ema[id] + (1.0 - d) * v;
    }
"
);

type Def = (&'static str, &'static [&'static str], String);

/// Name, uniform fields and body of a kind.
pub(super) fn of(kind: Kind) -> Def {
    forward(kind)
        .or_else(|| backward(kind))
        .expect("every kind is a forward or a backward kernel")
}

/// The forward kernels in train mode, the loss included.
fn forward(kind: Kind) -> Option<Def> {
    let tree = |b: &str| format!("{TREE}{b}");
    Some(match kind {
        Kind::ConvFwd => (
            "conv_fwd",
            &[
                "x", "w", "y", "ih", "iw", "ci", "oh", "ow", "co", "k", "s", "pt", "pl",
            ],
            CONV_FWD.into(),
        ),
        Kind::DwFwd => (
            "dw_fwd",
            &[
                "x", "w", "y", "ih", "iw", "c", "oh", "ow", "k", "s", "pt", "pl",
            ],
            DW_FWD.into(),
        ),
        Kind::BnStats => (
            "bn_stats",
            &[
                "z", "rows", "c", "mean", "istd", "rm", "rv", "eps", "momentum", "unbias",
            ],
            tree(BN_STATS),
        ),
        Kind::BnAct => (
            "bn_act",
            &["z", "y", "c", "mean", "istd", "gamma", "beta", "act"],
            BN_ACT.into(),
        ),
        Kind::Pool => ("pool", &["x", "y", "c", "hw"], POOL.into()),
        Kind::Linear => (
            "linear",
            &["x", "w", "b", "y", "pre", "fin", "fout", "act"],
            LINEAR.into(),
        ),
        Kind::Mul => ("mul", &["x", "m", "y"], MUL.into()),
        Kind::SeMul => ("se_mul", &["x", "gate", "y", "c", "hw"], SE_MUL.into()),
        Kind::Residual => (
            "residual",
            &["h", "skip", "y", "per", "scale"],
            RESIDUAL.into(),
        ),
        Kind::Loss => (
            "loss",
            &["logits", "tgt", "dlogits", "loss", "classes", "scale"],
            LOSS.into(),
        ),
        _ => return None,
    })
}

/// The backward kernels and the update.
fn backward(kind: Kind) -> Option<Def> {
    let tree = |b: &str| format!("{TREE}{b}");
    Some(match kind {
        Kind::LinearBwd => (
            "linear_bwd",
            &[
                "x", "w", "dy", "dw", "db", "dx", "rows", "fin", "fout", "epi", "aux", "act",
            ],
            LINEAR_BWD.into(),
        ),
        Kind::PoolBwd => ("pool_bwd", &["dp", "dx", "c", "hw"], POOL_BWD.into()),
        Kind::BnBwdSums => (
            "bn_bwd_sums",
            &[
                "z", "dy", "mean", "istd", "gamma", "beta", "dgamma", "dbeta", "sums", "rows", "c",
                "act",
            ],
            tree(BN_BWD_SUMS),
        ),
        Kind::BnBwdDz => (
            "bn_bwd_dz",
            &[
                "z", "dy", "mean", "istd", "gamma", "beta", "sums", "dz", "rows", "c", "act",
            ],
            BN_BWD_DZ.into(),
        ),
        Kind::ConvBwdW => (
            "conv_bwd_w",
            &[
                "x", "dz", "dw", "batch", "ih", "iw", "ci", "oh", "ow", "co", "k", "s", "pt", "pl",
            ],
            CONV_BWD_W.into(),
        ),
        Kind::ConvBwdX => (
            "conv_bwd_x",
            &[
                "dz", "w", "dx", "add", "ih", "iw", "ci", "oh", "ow", "co", "k", "s", "pt", "pl",
            ],
            CONV_BWD_X.into(),
        ),
        Kind::DwBwdW => (
            "dw_bwd_w",
            &[
                "x", "dz", "dw", "batch", "ih", "iw", "c", "oh", "ow", "k", "s", "pt", "pl",
            ],
            DW_BWD_W.into(),
        ),
        Kind::DwBwdX => (
            "dw_bwd_x",
            &[
                "dz", "w", "dx", "add", "ih", "iw", "c", "oh", "ow", "k", "s", "pt", "pl",
            ],
            DW_BWD_X.into(),
        ),
        Kind::SeGate => (
            "se_gate",
            &["dy", "x", "gate", "out", "c", "hw"],
            SE_GATE.into(),
        ),
        Kind::SeBwdX => (
            "se_bwd_x",
            &["dy", "gate", "dp", "dx", "c", "hw"],
            SE_BWD_X.into(),
        ),
        Kind::Update => (
            "update",
            &[
                "kind",
                "first",
                "lr",
                "wd",
                "momentum",
                "nesterov",
                "alpha",
                "eps",
                "beta1",
                "beta2",
                "c1",
                "c2",
                "ema_decay",
                "ema",
                "words",
            ],
            UPDATE.into(),
        ),
        _ => return None,
    })
}
