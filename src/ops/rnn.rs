//! Recurrent layers: ONNX `LSTM` and `GRU` (op-sets 14 to 22), forward, reverse or in both
//! directions, time-major (`layout` 0) or batch-major (`layout` 1), with per-item sequence
//! lengths.
//!
//! The input projection `X·Wᵀ` of every time step, for both directions, is one SGEMM before
//! the recurrence starts, so each step multiplies only the hidden state by `Rᵀ`: the part that
//! cannot be batched over time. The two directions of a bidirectional layer share nothing
//! after that product and run on two cores.

use super::linalg::gemm;
use super::shape::{fmt_shape, same, VType, D};
use super::{float, positive, spread, Attrs};
use crate::memory::MAX_ELEMENTS;
use crate::model::Attr;
use crate::sys::{sgemm_view, MatRef};
use crate::tensor::{Elem, Tensor};

/// Largest `hidden_size` accepted: far beyond real recurrent layers (a few thousand units),
/// small enough that `8 * hidden_size` and `R`'s size never overflow.
pub const MAX_HIDDEN: i64 = 1 << 16;

/// Multiply-adds from which work is split over the cores (one step's product, or the two
/// directions of a layer): below, a task costs more than it saves.
const PAR_FLOPS: usize = 1 << 17;

/// Which recurrent cell, with its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Gates in ONNX order i, o, f, c. With `input_forget`, the forget gate is `1 - i`.
    Lstm { input_forget: bool },
    /// Gates in ONNX order z, r, h. With `linear_before_reset` (what PyTorch exports), the
    /// reset gate scales `h·Rhᵀ + Rbh` instead of `h` before the product.
    Gru { linear_before_reset: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

/// An activation of the gates or the cell; ONNX's others (`HardSigmoid`, `LeakyRelu`, ...)
/// are refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Sigmoid,
    Tanh,
    Relu,
}

/// `LSTM`'s or `GRU`'s attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rnn {
    pub cell: Cell,
    pub direction: Direction,
    pub hidden: usize,
    /// `layout` 1: `X`, `Y` and the states hold the batch before time and direction.
    pub batch_first: bool,
    /// Per direction: `f`, `g` and (LSTM) `h` of the ONNX equations; a GRU's third is unused.
    pub acts: Vec<[Act; 3]>,
    /// Bound on the gates' inputs, `[-clip, clip]`, before their activations.
    pub clip: Option<f32>,
}

/// The tensors a layer runs on, in ONNX's input order.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub x: &'a Tensor,
    pub w: &'a Tensor,
    pub r: &'a Tensor,
    pub b: Option<&'a Tensor>,
    pub sequence_lens: Option<&'a Tensor<i64>>,
    pub initial_h: Option<&'a Tensor>,
    /// LSTM only.
    pub initial_c: Option<&'a Tensor>,
    /// LSTM only: peepholes `[num_directions, 3 * hidden_size]`, in order i, o, f.
    pub p: Option<&'a Tensor>,
}

impl Act {
    fn from_name(name: &str) -> Result<Act, String> {
        // onnxruntime matches the names in any case; so does nnsign.
        [Act::Sigmoid, Act::Tanh, Act::Relu]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("activation {name:?} is not supported (only Sigmoid, Tanh and Relu)")
            })
    }

    fn name(self) -> &'static str {
        match self {
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
            Act::Relu => "Relu",
        }
    }

    fn apply(self, v: &mut [f32]) {
        match self {
            Act::Sigmoid => v.iter_mut().for_each(|x| *x = 0.5 * tanh(0.5 * *x) + 0.5),
            Act::Tanh => v.iter_mut().for_each(|x| *x = tanh(*x)),
            Act::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        }
    }
}

/// tanh as a ratio of polynomials (Eigen's `generic_fast_tanh_float`), within 4e-7 of the
/// true value, and so sigmoid as `(1 + tanh(x / 2)) / 2` within 3e-7. It vectorizes, where
/// std's tanh and exp are a library call per element: with those, the gates' activations took
/// longer than the step's product.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    // Eigen's bound: beyond it, tanh is within 3e-7 of ±1, and so is the ratio at it.
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = (((((-2.760_768_5e-16 * x2 + 2.000_188e-13) * x2 - 8.604_672e-11) * x2
        + 5.122_297e-8)
        * x2
        + 1.485_722_4e-5)
        * x2
        + 6.372_619e-4)
        * x2
        + 4.893_524_6e-3;
    let q = ((1.198_258_4e-6 * x2 + 1.185_347e-4) * x2 + 2.268_434_7e-3) * x2 + 4.893_525e-3;
    x * p / q
}

impl Rnn {
    /// Parses the attributes of op `name`, `"LSTM"` or `"GRU"`.
    ///
    /// `activations` is a list of names in ONNX; the schema has no list of texts, so it is
    /// one text with the names separated by commas (`"Sigmoid,Tanh,Tanh"`).
    pub(crate) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Rnn, String> {
        let cell = match name {
            "LSTM" => Cell::Lstm {
                input_forget: a.flag("input_forget")?,
            },
            "GRU" => Cell::Gru {
                linear_before_reset: a.flag("linear_before_reset")?,
            },
            other => return Err(format!("op {other:?} is not a recurrent layer")),
        };
        let direction = match a.text("direction")?.unwrap_or("forward") {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            other => {
                return Err(format!(
                    "attribute \"direction\" = {other:?} must be forward, reverse or bidirectional"
                ))
            }
        };
        let hidden = a
            .int_opt("hidden_size")?
            .ok_or("attribute \"hidden_size\" is required")?;
        if !(1..=MAX_HIDDEN).contains(&hidden) {
            return Err(format!(
                "attribute \"hidden_size\" = {hidden} must be in 1..={MAX_HIDDEN}"
            ));
        }
        let batch_first = match a.int("layout", 0)? {
            0 => false,
            1 => true,
            v => return Err(format!("attribute \"layout\" must be 0 or 1, not {v}")),
        };
        let dirs = if direction == Direction::Bidirectional {
            2
        } else {
            1
        };
        let (per, defaults) = match cell {
            Cell::Lstm { .. } => (3, [Act::Sigmoid, Act::Tanh, Act::Tanh]),
            Cell::Gru { .. } => (2, [Act::Sigmoid, Act::Tanh, Act::Tanh]),
        };
        let acts = match activation_names(a)? {
            None => vec![defaults; dirs],
            Some(names) => {
                if names.len() != per * dirs {
                    return Err(format!(
                        "attribute \"activations\" lists {} function(s); a {} {name} takes {} ({} per direction)",
                        names.len(),
                        direction_name(direction),
                        per * dirs,
                        if per == 3 { "f, g, h" } else { "f, g" },
                    ));
                }
                let acts = names
                    .iter()
                    .map(|n| Act::from_name(n))
                    .collect::<Result<Vec<_>, _>>()?;
                acts.chunks(per)
                    .map(|c| [c[0], c[1], *c.get(2).unwrap_or(&Act::Tanh)])
                    .collect()
            }
        };
        // Sigmoid, Tanh and Relu take no parameters: a value meant for another function
        // would be silently ignored.
        for key in ["activation_alpha", "activation_beta"] {
            if a.floats(key)?.is_some_and(|v| !v.is_empty()) {
                let used: Vec<&str> = (acts.iter())
                    .flat_map(|a| a[..per].iter().map(|x| x.name()))
                    .collect();
                return Err(format!(
                    "attribute {key:?} is given, but none of the activations ({}) takes it",
                    used.join(", ")
                ));
            }
        }
        let clip = match a.float("clip", f32::INFINITY)? {
            c if c.is_infinite() => None,
            c => Some(positive(c, "clip")?),
        };
        Ok(Rnn {
            cell,
            direction,
            hidden: hidden as usize,
            batch_first,
            acts,
            clip,
        })
    }

    fn dirs(&self) -> usize {
        match self.direction {
            Direction::Bidirectional => 2,
            _ => 1,
        }
    }

    /// Gates per direction: the rows of `W` and `R` are `gates * hidden_size`.
    fn gates(&self) -> usize {
        match self.cell {
            Cell::Lstm { .. } => 4,
            Cell::Gru { .. } => 3,
        }
    }

    /// The types of the outputs, in ONNX order (`Y`, `Y_h`, and `Y_c` for an LSTM), for
    /// inputs in ONNX order (`X`, `W`, `R`, `B`, `sequence_lens`, `initial_h`, then for an
    /// LSTM `initial_c` and `P`; `None`: omitted). Every output is typed, given or not.
    pub(crate) fn infer(&self, ins: &[Option<&VType>]) -> Result<Vec<VType>, String> {
        let lstm = matches!(self.cell, Cell::Lstm { .. });
        let max = if lstm { 8 } else { 6 };
        if ins.len() > max {
            return Err(format!("takes at most {max} inputs, {} given", ins.len()));
        }
        let at = |i: usize| ins.get(i).copied().flatten();
        let (Some(x), Some(w), Some(r)) = (at(0), at(1), at(2)) else {
            return Err("inputs X, W and R are required".into());
        };
        let (dirs, hs) = (self.dirs() as u64, self.hidden as u64);
        let gh = D::Fixed(self.gates() as u64 * hs);
        let (nd, h) = (D::Fixed(dirs), D::Fixed(hs));
        let x_layout = if self.batch_first {
            "[batch_size, seq_length, input_size]"
        } else {
            "[seq_length, batch_size, input_size]"
        };
        if x.rank() != 3 {
            return Err(format!(
                "X must have rank 3, {x_layout}, not {}",
                fmt_shape(&x.shape)
            ));
        }
        float(x, "X")?;
        let (seq, mut batch) = match self.batch_first {
            false => (x.shape[0].clone(), x.shape[1].clone()),
            true => (x.shape[1].clone(), x.shape[0].clone()),
        };
        let g = self.gates();
        expect(
            w,
            "W",
            &format!("[num_directions, {g} * hidden_size, input_size]"),
            &[&nd, &gh, &x.shape[2]],
        )?;
        expect(
            r,
            "R",
            &format!("[num_directions, {g} * hidden_size, hidden_size]"),
            &[&nd, &gh, &h],
        )?;
        if let Some(b) = at(3) {
            let twice = D::Fixed(2 * g as u64 * hs);
            expect(
                b,
                "B",
                &format!("[num_directions, {} * hidden_size]", 2 * g),
                &[&nd, &twice],
            )?;
        }
        if let Some(l) = at(4) {
            if l.elem != Elem::I64 {
                return Err(format!(
                    "sequence_lens must be integers, not {}",
                    l.elem.name()
                ));
            }
            if l.rank() != 1 {
                return Err(format!(
                    "sequence_lens must have rank 1, [batch_size], not {}",
                    fmt_shape(&l.shape)
                ));
            }
            batch = same(&batch, &l.shape[0], || {
                format!(
                    "sequence_lens {} does not match batch_size of X {}",
                    fmt_shape(&l.shape),
                    fmt_shape(&x.shape)
                )
            })?;
        }
        let state = |b: &D| match self.batch_first {
            false => vec![nd.clone(), b.clone(), h.clone()],
            true => vec![b.clone(), nd.clone(), h.clone()],
        };
        let state_layout = match self.batch_first {
            false => "[num_directions, batch_size, hidden_size]",
            true => "[batch_size, num_directions, hidden_size]",
        };
        let states: &[(usize, &str)] = if lstm {
            &[(5, "initial_h"), (6, "initial_c")]
        } else {
            &[(5, "initial_h")]
        };
        for &(i, what) in states {
            if let Some(s) = at(i) {
                let want = state(&batch);
                let got = expect(s, what, state_layout, &want.iter().collect::<Vec<_>>())?;
                batch = got[if self.batch_first { 0 } else { 1 }].clone();
            }
        }
        if lstm {
            if let Some(p) = at(7) {
                let three = D::Fixed(3 * hs);
                expect(p, "P", "[num_directions, 3 * hidden_size]", &[&nd, &three])?;
            }
        }
        // X·Wᵀ of every step is held at once: [seq * batch, num_directions * gates * hidden].
        if let (Some(s), Some(b)) = (seq.fixed(), batch.fixed()) {
            let n = [b, dirs, g as u64, hs]
                .into_iter()
                .try_fold(s, u64::checked_mul)
                .filter(|&n| n <= MAX_ELEMENTS);
            if n.is_none() {
                return Err(format!(
                    "{s} steps of {b} items need {s} * {b} * {} gate values, more than nnsign can hold",
                    dirs * g as u64 * hs
                ));
            }
        }
        let y = match self.batch_first {
            false => vec![seq, nd.clone(), batch.clone(), h.clone()],
            true => vec![batch.clone(), seq, nd.clone(), h.clone()],
        };
        let mut out = vec![
            VType::new(Elem::F32, y),
            VType::new(Elem::F32, state(&batch)),
        ];
        if lstm {
            out.push(VType::new(Elem::F32, state(&batch)));
        }
        Ok(out)
    }

    /// Floats of working memory [`Rnn::run`] allocates, beyond its inputs and outputs, for
    /// input `X` of shape `x` (accepted by inference): the input projections of every step
    /// (`seq * batch * num_directions * gates * hidden_size`, the bulk) and, for each direction
    /// (both at once when bidirectional), `Rᵀ` and the states and gates of one step.
    pub(crate) fn scratch_floats(&self, x: &[usize]) -> u64 {
        let [a, b, ..] = x else { return 0 };
        let batch = if self.batch_first { *a } else { *b } as u64;
        let (dirs, gh, hs) = (
            self.dirs() as u64,
            (self.gates() * self.hidden) as u64,
            self.hidden as u64,
        );
        let per_dir = (gh * hs + gh + hs).saturating_add(batch.saturating_mul(2 * gh + 2 * hs));
        (*a as u64)
            .saturating_mul(*b as u64)
            .saturating_mul(dirs * gh)
            .saturating_add(per_dir.saturating_mul(dirs))
    }

    /// Runs the layer on tensors whose shapes [`Rnn::infer`] accepted; returns `Y`, `Y_h` and
    /// (LSTM) `Y_c`. Fails only on a `sequence_lens` value outside `0..=seq_length`.
    ///
    /// Past an item's length, `Y` is 0 and the state stops changing, so `Y_h` and `Y_c` are
    /// those of its last step (for the reverse direction, of step 0); an item of length 0 gets
    /// zeros, as in onnxruntime.
    pub(crate) fn run(&self, ins: &Inputs<'_>) -> Result<Vec<Tensor>, String> {
        let x = ins.x;
        let (seq, batch) = match self.batch_first {
            false => (x.shape[0], x.shape[1]),
            true => (x.shape[1], x.shape[0]),
        };
        let lens: Vec<usize> = match ins.sequence_lens {
            None => vec![seq; batch],
            Some(l) => (l.data.iter().enumerate())
                .map(|(n, &v)| {
                    usize::try_from(v)
                        .ok()
                        .filter(|&v| v <= seq)
                        .ok_or_else(|| format!("sequence_lens[{n}] = {v} is outside 0..={seq}"))
                })
                .collect::<Result<_, _>>()?,
        };
        let d = Dims {
            seq,
            batch,
            input: x.shape[2],
            hs: self.hidden,
            dirs: self.dirs(),
            gh: self.gates() * self.hidden,
            batch_first: self.batch_first,
        };
        let state_shape = match self.batch_first {
            false => vec![d.dirs, batch, d.hs],
            true => vec![batch, d.dirs, d.hs],
        };
        let y_shape = match self.batch_first {
            false => vec![seq, d.dirs, batch, d.hs],
            true => vec![batch, seq, d.dirs, d.hs],
        };
        let states = d.dirs * batch * d.hs;
        let mut y = vec![0f32; seq * states];
        let mut y_h = vec![0f32; states];
        let lstm = matches!(self.cell, Cell::Lstm { .. });
        let mut y_c = vec![0f32; if lstm { states } else { 0 }];
        if seq > 0 && batch > 0 {
            // Each direction writes its own rows of Y: rows of `hs` (batch-major) or blocks of
            // `batch * hs` (time-major), alternating between directions.
            let unit = if d.batch_first { d.hs } else { batch * d.hs };
            let mut parts: [Vec<&mut [f32]>; 2] = [Vec::new(), Vec::new()];
            for (k, part) in y.chunks_mut(unit).enumerate() {
                parts[k % d.dirs].push(part);
            }
            let [fwd, bwd] = parts;
            let work = (seq * batch).saturating_mul(d.gh * (d.hs + 8));
            let par = spread(work.saturating_mul(d.dirs), PAR_FLOPS);
            let all = || {
                let xw = self.project(ins, &d);
                let one = |dir: usize, rows: Vec<&mut [f32]>| {
                    let mut rows = Rows { parts: rows, d: &d };
                    self.direction(dir, ins, &xw, &lens, &mut rows)
                };
                match (d.dirs, par) {
                    (2, true) => {
                        let (a, b) = rayon::join(|| one(0, fwd), || one(1, bwd));
                        vec![a, b]
                    }
                    (2, false) => vec![one(0, fwd), one(1, bwd)],
                    _ => vec![one(0, fwd)],
                }
            };
            // On a core of the pool, the steps' own splits are cheap: from outside it, each
            // would wait for the pool to wake and take it.
            let finals = if par { rayon::scope(|_| all()) } else { all() };
            for (dir, (h, c)) in finals.iter().enumerate() {
                for (n, &len) in lens.iter().enumerate() {
                    if len == 0 {
                        continue;
                    }
                    let at = d.state_at(n, dir);
                    let row = n * d.hs..(n + 1) * d.hs;
                    y_h[at..at + d.hs].copy_from_slice(&h[row.clone()]);
                    if !c.is_empty() {
                        y_c[at..at + d.hs].copy_from_slice(&c[row]);
                    }
                }
            }
        }
        let t = |shape: &Vec<usize>, data| Tensor {
            shape: shape.clone(),
            data,
        };
        let mut out = vec![t(&y_shape, y), t(&state_shape, y_h)];
        if lstm {
            out.push(t(&state_shape, y_c));
        }
        Ok(out)
    }

    /// `X·Wᵀ` plus the biases that do not depend on the state, for every step and direction:
    /// `[seq * batch, dirs * gh]`, rows in `X`'s order.
    fn project(&self, ins: &Inputs<'_>, d: &Dims) -> Vec<f32> {
        let (rows, cols) = (d.seq * d.batch, d.dirs * d.gh);
        let mut xw;
        let beta = match ins.b {
            Some(b) => {
                let mut bias = Vec::with_capacity(cols);
                for dir in 0..d.dirs {
                    let (wb, rb) = b.data[dir * 2 * d.gh..(dir + 1) * 2 * d.gh].split_at(d.gh);
                    bias.extend(wb.iter().zip(rb).enumerate().map(|(k, (w, r))| {
                        // With linear_before_reset, Rbh is added inside the reset's product.
                        let inside = matches!(
                            self.cell,
                            Cell::Gru {
                                linear_before_reset: true
                            }
                        ) && k >= 2 * d.hs;
                        if inside {
                            *w
                        } else {
                            w + r
                        }
                    }));
                }
                xw = vec![0f32; rows * cols];
                super::chunks(&mut xw, cols, spread(rows * cols, 1 << 15), |_, row| {
                    row.copy_from_slice(&bias)
                });
                1.0
            }
            None => {
                xw = vec![0f32; rows * cols];
                0.0
            }
        };
        // W is [dirs * gh, input]: read transposed, it is [input, dirs * gh].
        let wt = MatRef {
            data: &ins.w.data,
            rows: d.input,
            cols,
            rs: 1,
            cs: d.input,
        };
        gemm(
            1.0,
            MatRef::new(&ins.x.data, rows, d.input),
            wt,
            beta,
            &mut xw,
        );
        xw
    }

    /// Runs direction `dir` over every step, writing its rows of `Y`; returns its final hidden
    /// and (LSTM) cell states, `[batch, hs]` each, for the items of nonzero length.
    fn direction(
        &self,
        dir: usize,
        ins: &Inputs<'_>,
        xw: &[f32],
        lens: &[usize],
        y: &mut Rows<'_, '_>,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = *y.d;
        let (hs, gh, batch) = (d.hs, d.gh, d.batch);
        let reverse = self.direction == Direction::Reverse || dir == 1;
        let acts = self.acts[dir];
        let initial = |t: Option<&Tensor>| {
            let mut s = vec![0f32; batch * hs];
            if let Some(t) = t {
                for (n, row) in s.chunks_mut(hs).enumerate() {
                    let at = d.state_at(n, dir);
                    row.copy_from_slice(&t.data[at..at + hs]);
                }
            }
            s
        };
        let mut h = initial(ins.initial_h);
        let r = &ins.r.data[dir * gh * hs..(dir + 1) * gh * hs];
        let mut tmp = Vec::new();
        let x_row = |t: usize, n: usize| {
            let row = if d.batch_first {
                n * d.seq + t
            } else {
                t * batch + n
            };
            let at = row * d.dirs * gh + dir * gh;
            &xw[at..at + gh]
        };
        let steps = (0..d.seq).map(|s| if reverse { d.seq - 1 - s } else { s });
        let clip = self.clip;
        match self.cell {
            Cell::Lstm { input_forget } => {
                let mut c = initial(ins.initial_c);
                let p = ins.p.map(|p| &p.data[dir * 3 * hs..(dir + 1) * 3 * hs]);
                let rec = Product::new(r, hs);
                let mut gates = vec![0f32; batch * gh];
                let mut act = vec![0f32; hs];
                let cell = LstmStep {
                    acts,
                    clip,
                    input_forget,
                    p,
                };
                for t in steps {
                    rec.run(&h, &mut gates, &mut tmp);
                    for n in (0..batch).filter(|&n| t < lens[n]) {
                        let rows = n * hs..(n + 1) * hs;
                        cell.step(
                            &mut gates[n * gh..(n + 1) * gh],
                            x_row(t, n),
                            &mut h[rows.clone()],
                            &mut c[rows.clone()],
                            &mut act,
                        );
                        y.row(t, n).copy_from_slice(&h[rows]);
                    }
                }
                (h, c)
            }
            Cell::Gru {
                linear_before_reset: true,
            } => {
                let rbh = ins.b.map(|b| &b.data[dir * 2 * gh + gh + 2 * hs..][..hs]);
                let rec = Product::new(r, hs);
                let mut gates = vec![0f32; batch * gh];
                for t in steps {
                    rec.run(&h, &mut gates, &mut tmp);
                    for n in (0..batch).filter(|&n| t < lens[n]) {
                        let rows = n * hs..(n + 1) * hs;
                        let g = &mut gates[n * gh..(n + 1) * gh];
                        let (zr, hh) = g.split_at_mut(2 * hs);
                        gru_gates(zr, &x_row(t, n)[..2 * hs], acts[0], clip);
                        let (z, rg) = zr.split_at(hs);
                        // hh holds h·Rhᵀ: the candidate is g(xh + r * (h·Rhᵀ + Rbh)).
                        if let Some(rbh) = rbh {
                            add(hh, rbh);
                        }
                        let xh = &x_row(t, n)[2 * hs..];
                        for ((v, &r), &x) in hh.iter_mut().zip(rg).zip(xh) {
                            *v = x + r * *v;
                        }
                        gru_finish(hh, z, &mut h[rows.clone()], acts[1], clip);
                        y.row(t, n).copy_from_slice(&h[rows]);
                    }
                }
                (h, Vec::new())
            }
            Cell::Gru {
                linear_before_reset: false,
            } => {
                // The candidate needs (r * h)·Rhᵀ: a second product once r is known.
                let (r_zr, r_h) = r.split_at(2 * hs * hs);
                let (rec_zr, rec_h) = (Product::new(r_zr, hs), Product::new(r_h, hs));
                let mut zr = vec![0f32; batch * 2 * hs];
                let mut rh = vec![0f32; batch * hs];
                let mut hh = vec![0f32; batch * hs];
                for t in steps {
                    rec_zr.run(&h, &mut zr, &mut tmp);
                    for n in 0..batch {
                        let g = &mut zr[n * 2 * hs..(n + 1) * 2 * hs];
                        gru_gates(g, &x_row(t, n)[..2 * hs], acts[0], clip);
                        let rows = n * hs..(n + 1) * hs;
                        for ((v, &r), &h) in rh[rows.clone()].iter_mut().zip(&g[hs..]).zip(&h[rows])
                        {
                            *v = r * h;
                        }
                    }
                    rec_h.run(&rh, &mut hh, &mut tmp);
                    for n in (0..batch).filter(|&n| t < lens[n]) {
                        let rows = n * hs..(n + 1) * hs;
                        let v = &mut hh[rows.clone()];
                        add(v, &x_row(t, n)[2 * hs..]);
                        let z = &zr[n * 2 * hs..n * 2 * hs + hs];
                        gru_finish(v, z, &mut h[rows.clone()], acts[1], clip);
                        y.row(t, n).copy_from_slice(&h[rows]);
                    }
                }
                (h, Vec::new())
            }
        }
    }
}

/// Batch sizes up to which a step's `h·Rᵀ` runs as scaled row additions; above, as an SGEMM,
/// which packs `Rᵀ` again every step but then multiplies at full width.
const SMALL_BATCH: usize = 4;

/// The product `h·Rᵀ` of every step, for some gate rows `R` (`[rows, hs]`) of one direction.
struct Product {
    hs: usize,
    rows: usize,
    /// `Rᵀ`, `[hs, rows]`: both ways of multiplying read it along its rows.
    rt: Vec<f32>,
}

impl Product {
    fn new(r: &[f32], hs: usize) -> Product {
        let rows = r.len() / hs;
        let mut rt = vec![0f32; r.len()];
        transpose(r, rows, hs, &mut rt);
        Product { hs, rows, rt }
    }

    /// `out = h·Rᵀ`, `[batch, rows]` for `h` `[batch, hs]`; `tmp` is working memory.
    fn run(&self, h: &[f32], out: &mut [f32], tmp: &mut Vec<f32>) {
        let (hs, rows) = (self.hs, self.rows);
        let batch = h.len() / hs;
        // Split by columns, so that no core packs what another does: each writes its
        // columns of every item, `[batch, cols]`, straight into `out` when that is one item.
        let par = spread(batch * rows * hs, PAR_FLOPS);
        let per = match par {
            true => rows
                .div_ceil(rayon::current_num_threads())
                .next_multiple_of(16),
            false => rows,
        };
        let direct = batch == 1 || !par;
        let dst: &mut [f32] = if direct {
            out
        } else {
            tmp.resize(batch * rows, 0.0);
            tmp
        };
        super::chunks(dst, per * batch, par, |i, d| {
            let cols = i * per..i * per + d.len() / batch;
            if batch > SMALL_BATCH {
                let rt = MatRef {
                    data: &self.rt[cols.start..],
                    rows: hs,
                    cols: cols.len(),
                    rs: rows,
                    cs: 1,
                };
                sgemm_view(1.0, MatRef::new(h, batch, hs), rt, 0.0, d);
            } else {
                axpy(h, &self.rt, hs, rows, cols, d);
            }
        });
        if !direct {
            for (i, part) in tmp.chunks(per * batch).enumerate() {
                let cols = part.len() / batch;
                for (n, src) in part.chunks_exact(cols).enumerate() {
                    out[n * rows + i * per..][..cols].copy_from_slice(src);
                }
            }
        }
    }
}

/// `out[n][j - cols.start] = h[n] · rt[.., j]` for `j` in `cols`: rows of `rt` (`[hs, rows]`)
/// scaled and added to rows of `out` (`[batch, cols.len()]`), four rows of `rt` into two of
/// `out` at a time. Unlike dot products, the sums run along contiguous rows: they vectorize.
fn axpy(
    h: &[f32],
    rt: &[f32],
    hs: usize,
    rows: usize,
    cols: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let width = cols.len();
    let rt_row = |k: usize| &rt[k * rows + cols.start..][..width];
    out.fill(0.0);
    let mut pairs = out.chunks_exact_mut(2 * width);
    for (o, hn) in (&mut pairs).zip(h.chunks_exact(2 * hs)) {
        let (o0, o1) = o.split_at_mut(width);
        let (h0, h1) = hn.split_at(hs);
        let (q0, rest0) = h0.as_chunks::<4>();
        let (q1, rest1) = h1.as_chunks::<4>();
        for (q, (a, b)) in q0.iter().zip(q1).enumerate() {
            let k = 4 * q;
            let (r0, r1, r2, r3) = (rt_row(k), rt_row(k + 1), rt_row(k + 2), rt_row(k + 3));
            let rs = r0.iter().zip(r1).zip(r2).zip(r3);
            for ((o0, o1), (((&x0, &x1), &x2), &x3)) in o0.iter_mut().zip(o1.iter_mut()).zip(rs) {
                *o0 += a[0] * x0 + a[1] * x1 + a[2] * x2 + a[3] * x3;
                *o1 += b[0] * x0 + b[1] * x1 + b[2] * x2 + b[3] * x3;
            }
        }
        for (i, (&a, &b)) in rest0.iter().zip(rest1).enumerate() {
            let r = rt_row(4 * q0.len() + i);
            for ((o0, o1), &x) in o0.iter_mut().zip(o1.iter_mut()).zip(r) {
                *o0 += a * x;
                *o1 += b * x;
            }
        }
    }
    // An odd item last, alone.
    let o = pairs.into_remainder();
    if !o.is_empty() {
        let hn = &h[h.len() - hs..];
        let (quads, rest) = hn.as_chunks::<4>();
        for (q, a) in quads.iter().enumerate() {
            let k = 4 * q;
            let (r0, r1, r2, r3) = (rt_row(k), rt_row(k + 1), rt_row(k + 2), rt_row(k + 3));
            for ((((o, &x0), &x1), &x2), &x3) in o.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
                *o += a[0] * x0 + a[1] * x1 + a[2] * x2 + a[3] * x3;
            }
        }
        for (i, &a) in rest.iter().enumerate() {
            let r = rt_row(4 * quads.len() + i);
            o.iter_mut().zip(r).for_each(|(o, &x)| *o += a * x);
        }
    }
}

/// `src` (`[rows, cols]`) transposed into `dst` (`[cols, rows]`), by blocks of rows whose
/// cache lines stay in cache while each is read across, on every core when large.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const BLOCK: usize = 32;
    let par = spread(src.len(), 1 << 16);
    let per = cols.div_ceil(if par { rayon::current_num_threads() } else { 1 });
    super::chunks(dst, per * rows, par, |i, d| {
        let first = i * per;
        for j0 in (0..rows).step_by(BLOCK) {
            let j1 = (j0 + BLOCK).min(rows);
            for (k, out) in d.chunks_exact_mut(rows).enumerate() {
                let col = first + k;
                for (o, j) in out[j0..j1].iter_mut().zip(j0..j1) {
                    *o = src[j * cols + col];
                }
            }
        }
    });
}

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Dims {
    seq: usize,
    batch: usize,
    input: usize,
    hs: usize,
    dirs: usize,
    /// Gate rows per direction: `gates * hs`.
    gh: usize,
    batch_first: bool,
}

impl Dims {
    /// Where item `n`'s state of direction `dir` starts in `initial_h`, `Y_h` and the like.
    fn state_at(&self, n: usize, dir: usize) -> usize {
        match self.batch_first {
            false => (dir * self.batch + n) * self.hs,
            true => (n * self.dirs + dir) * self.hs,
        }
    }
}

/// One direction's rows of `Y`, as split by [`Rnn::run`].
struct Rows<'a, 'd> {
    parts: Vec<&'a mut [f32]>,
    d: &'d Dims,
}

impl Rows<'_, '_> {
    /// The output of step `t` for item `n`.
    fn row(&mut self, t: usize, n: usize) -> &mut [f32] {
        let hs = self.d.hs;
        match self.d.batch_first {
            false => &mut self.parts[t][n * hs..(n + 1) * hs],
            true => &mut self.parts[n * self.d.seq + t][..],
        }
    }
}

/// One LSTM step's settings for a direction.
struct LstmStep<'a> {
    acts: [Act; 3],
    clip: Option<f32>,
    input_forget: bool,
    p: Option<&'a [f32]>,
}

impl LstmStep<'_> {
    /// One item's step: `g` holds `h·Rᵀ` (gates i, o, f, c), `x` its `X·Wᵀ + Wb + Rb`; `h`
    /// and `c` are updated in place.
    fn step(&self, g: &mut [f32], x: &[f32], h: &mut [f32], c: &mut [f32], tmp: &mut [f32]) {
        let hs = h.len();
        let [f, gc, hc] = self.acts;
        add(g, x);
        let (gi, rest) = g.split_at_mut(hs);
        let (go, rest) = rest.split_at_mut(hs);
        let (gf, gg) = rest.split_at_mut(hs);
        if let Some(p) = self.p {
            mul_add(gi, &p[..hs], c);
            mul_add(gf, &p[2 * hs..], c);
        }
        clip(gi, self.clip);
        f.apply(gi);
        if self.input_forget {
            gf.iter_mut().zip(&*gi).for_each(|(v, &i)| *v = 1.0 - i);
        } else {
            clip(gf, self.clip);
            f.apply(gf);
        }
        clip(gg, self.clip);
        gc.apply(gg);
        for (((c, &f), &i), &g) in c.iter_mut().zip(&*gf).zip(&*gi).zip(&*gg) {
            *c = f * *c + i * g;
        }
        if let Some(p) = self.p {
            mul_add(go, &p[hs..2 * hs], c);
        }
        clip(go, self.clip);
        f.apply(go);
        tmp.copy_from_slice(c);
        hc.apply(tmp);
        for ((h, &o), &t) in h.iter_mut().zip(&*go).zip(&*tmp) {
            *h = o * t;
        }
    }
}

/// A GRU's update and reset gates from `zr` (`h·Rᵀ` of both) and `x` (`X·Wᵀ` plus biases).
fn gru_gates(zr: &mut [f32], x: &[f32], f: Act, bound: Option<f32>) {
    add(zr, x);
    clip(zr, bound);
    f.apply(zr);
}

/// A GRU's new state from the candidate's input `v` (clipped and activated here) and the
/// update gate `z`: `h = (1 - z) * g(v) + z * h`.
fn gru_finish(v: &mut [f32], z: &[f32], h: &mut [f32], g: Act, bound: Option<f32>) {
    clip(v, bound);
    g.apply(v);
    for ((h, &v), &z) in h.iter_mut().zip(&*v).zip(z) {
        *h = (1.0 - z) * v + z * *h;
    }
}

fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
}

/// `a += p * c`, element by element (a peephole).
fn mul_add(a: &mut [f32], p: &[f32], c: &[f32]) {
    for ((a, &p), &c) in a.iter_mut().zip(p).zip(c) {
        *a += p * c;
    }
}

fn clip(v: &mut [f32], bound: Option<f32>) {
    if let Some(b) = bound {
        v.iter_mut().for_each(|x| *x = x.clamp(-b, b));
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Reverse => "reverse",
        Direction::Bidirectional => "bidirectional",
    }
}

/// `activations` as names: one text, names separated by commas (see [`Rnn::parse`]).
fn activation_names<'a>(a: &mut Attrs<'a>) -> Result<Option<Vec<&'a str>>, String> {
    match a.get("activations") {
        None => Ok(None),
        Some(Attr::Text(s)) => Ok(Some(s.split(',').map(str::trim).collect())),
        Some(_) => Err(a.wrong(
            "activations",
            "a text of names separated by commas (\"Sigmoid,Tanh,Tanh\")",
        )),
    }
}

/// Checks that `t`, input `what`, is F32 with shape `want` (laid out as `layout` says), and
/// returns its dimensions merged with `want`'s.
fn expect(t: &VType, what: &str, layout: &str, want: &[&D]) -> Result<Vec<D>, String> {
    float(t, what)?;
    let wrong = || {
        let want: Vec<D> = want.iter().map(|&d| d.clone()).collect();
        format!(
            "{what} has shape {}, but {layout} is {}",
            fmt_shape(&t.shape),
            fmt_shape(&want)
        )
    };
    if t.rank() != want.len() {
        return Err(wrong());
    }
    (t.shape.iter().zip(want))
        .map(|(a, b)| same(a, b, String::new).map_err(|_| wrong()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Node;
    use serde_json::Value as Json;
    use std::collections::BTreeMap;

    fn node(op: &str, attrs: &[(&str, Attr)]) -> Node {
        Node {
            op: op.into(),
            name: "rnn".into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn parse(op: &str, attrs: &[(&str, Attr)]) -> Result<Rnn, String> {
        let n = node(op, attrs);
        let mut a = Attrs::new(&n);
        let rnn = Rnn::parse(op, &mut a)?;
        a.finish()?;
        Ok(rnn)
    }

    fn fixed(shape: &[usize]) -> VType {
        VType::new(
            Elem::F32,
            shape.iter().map(|&d| D::Fixed(d as u64)).collect(),
        )
    }

    fn shape_of(j: &Json) -> Vec<usize> {
        (j["shape"].as_array().expect("shape"))
            .iter()
            .map(|d| d.as_u64().expect("size") as usize)
            .collect()
    }

    fn floats(j: &Json) -> Tensor {
        Tensor {
            shape: shape_of(j),
            data: (j["data"].as_array().expect("data"))
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect(),
        }
    }

    fn attr(v: &Json) -> Attr {
        match v {
            Json::Number(n) if n.is_i64() => Attr::Int(n.as_i64().expect("i64")),
            Json::Number(n) => Attr::Float(n.as_f64().expect("f64")),
            Json::String(s) => Attr::Text(s.clone()),
            Json::Array(names) => Attr::Text(
                names
                    .iter()
                    .map(|n| n.as_str().expect("activation name"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            other => panic!("unexpected attribute {other}"),
        }
    }

    const INPUTS: [&str; 8] = [
        "X",
        "W",
        "R",
        "B",
        "sequence_lens",
        "initial_h",
        "initial_c",
        "P",
    ];

    /// Every case of tests/fixtures/ops3/rnn.json (scripts/make_rnn_reference.py): parsed,
    /// inferred over the fixed and the symbolic shapes, and run, all outputs to 1e-5.
    #[test]
    fn matches_the_onnx_reference_cases() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ops3/rnn.json");
        let text = std::fs::read_to_string(path).expect("run scripts/make_rnn_reference.py");
        let json: Json = serde_json::from_str(&text).expect("valid JSON");
        let cases = json["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 23);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let op = case["op"].as_str().expect("op");
            let attrs: Vec<(&str, Attr)> = (case["attrs"].as_object().expect("attrs"))
                .iter()
                .map(|(k, v)| (k.as_str(), attr(v)))
                .collect();
            let rnn = parse(op, &attrs).unwrap_or_else(|e| panic!("{name}: {e}"));
            let given: BTreeMap<&str, &Json> = (case["inputs"].as_object().expect("inputs"))
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            let count = if op == "LSTM" { 8 } else { 6 };
            let tensors: Vec<Option<Tensor>> = INPUTS[..count]
                .iter()
                .map(|k| {
                    given
                        .get(k)
                        .filter(|_| *k != "sequence_lens")
                        .map(|j| floats(j))
                })
                .collect();
            let lens: Option<Tensor<i64>> = given.get("sequence_lens").map(|j| Tensor {
                shape: shape_of(j),
                data: (j["data"].as_array().expect("data"))
                    .iter()
                    .map(|v| v.as_i64().expect("integer"))
                    .collect(),
            });
            let types: Vec<Option<VType>> = (INPUTS[..count].iter().zip(&tensors))
                .map(|(k, t)| match (*k, t) {
                    ("sequence_lens", _) => lens
                        .as_ref()
                        .map(|l| VType::new(Elem::I64, vec![D::Fixed(l.shape[0] as u64)])),
                    (_, t) => t.as_ref().map(|t| fixed(&t.shape)),
                })
                .collect();
            let refs: Vec<Option<&VType>> = types.iter().map(Option::as_ref).collect();
            let inferred = rnn.infer(&refs).unwrap_or_else(|e| panic!("{name}: {e}"));
            // The same with seq_length and batch_size as symbols: they travel to the outputs.
            let (seq_ax, batch_ax) = if rnn.batch_first { (1, 0) } else { (0, 1) };
            let mut sym = types.clone();
            let x = sym[0].as_mut().expect("X");
            x.shape[seq_ax] = D::Sym("seq".into());
            x.shape[batch_ax] = D::Sym("batch".into());
            let sym_refs: Vec<Option<&VType>> = sym.iter().map(Option::as_ref).collect();
            let symbolic = rnn
                .infer(&sym_refs)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let outs = rnn
                .run(&Inputs {
                    x: tensors[0].as_ref().expect("X"),
                    w: tensors[1].as_ref().expect("W"),
                    r: tensors[2].as_ref().expect("R"),
                    b: tensors[3].as_ref(),
                    sequence_lens: lens.as_ref(),
                    initial_h: tensors[5].as_ref(),
                    initial_c: tensors.get(6).and_then(Option::as_ref),
                    p: tensors.get(7).and_then(Option::as_ref),
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = case["outputs"].as_object().expect("outputs");
            let names = if op == "LSTM" {
                &["Y", "Y_h", "Y_c"][..]
            } else {
                &["Y", "Y_h"][..]
            };
            assert_eq!(outs.len(), names.len(), "{name}");
            assert_eq!(inferred.len(), names.len(), "{name}");
            for (i, out) in names.iter().enumerate() {
                let want = floats(&expected[*out]);
                assert_eq!(inferred[i], fixed(&want.shape), "{name} {out}");
                assert_eq!(outs[i].shape, want.shape, "{name} {out}");
                // Symbols stay where seq and batch go; everything else is known.
                for (d, &n) in symbolic[i].shape.iter().zip(&want.shape) {
                    assert!(
                        *d == D::Fixed(n as u64)
                            || *d == D::Sym("seq".into())
                            || *d == D::Sym("batch".into()),
                        "{name} {out}: {}",
                        fmt_shape(&symbolic[i].shape)
                    );
                }
                for (k, (g, w)) in outs[i].data.iter().zip(&want.data).enumerate() {
                    assert!((g - w).abs() <= 1e-5, "{name} {out}[{k}]: {g} != {w}");
                }
            }
        }
    }

    fn random(shape: &[usize], seed: &mut u64, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// Direction `dir` of a `[2, ...]` tensor, as `[1, ...]`.
    fn half(t: &Tensor, dir: usize) -> Tensor {
        let n = t.data.len() / 2;
        let mut shape = t.shape.clone();
        shape[0] = 1;
        Tensor {
            shape,
            data: t.data[dir * n..(dir + 1) * n].to_vec(),
        }
    }

    /// A bidirectional layer large enough to run its directions on two cores (and split its
    /// input product by rows) gives exactly what a forward and a reverse layer give apart.
    #[test]
    fn both_directions_at_once_equal_each_alone() {
        for op in ["LSTM", "GRU"] {
            for lbr in [0, 1] {
                let (seq, batch, input, hs) = (9, 6, 20, 40);
                let g = if op == "LSTM" { 4 } else { 3 };
                let mut seed = 7;
                let x = random(&[seq, batch, input], &mut seed, 1.0);
                let w = random(&[2, g * hs, input], &mut seed, 0.3);
                let r = random(&[2, g * hs, hs], &mut seed, 0.3);
                let b = random(&[2, 2 * g * hs], &mut seed, 0.3);
                let h0 = random(&[2, batch, hs], &mut seed, 1.0);
                let lens = Tensor {
                    shape: vec![batch],
                    data: vec![9, 3, 0, 9, 1, 8],
                };
                let extra = if op == "LSTM" {
                    ("input_forget", Attr::Int(0))
                } else {
                    ("linear_before_reset", Attr::Int(lbr))
                };
                let layer = |dir: &str| {
                    parse(
                        op,
                        &[
                            ("hidden_size", Attr::Int(hs as i64)),
                            ("direction", Attr::Text(dir.into())),
                            extra.clone(),
                        ],
                    )
                    .expect("valid")
                };
                let both = layer("bidirectional")
                    .run(&Inputs {
                        x: &x,
                        w: &w,
                        r: &r,
                        b: Some(&b),
                        sequence_lens: Some(&lens),
                        initial_h: Some(&h0),
                        initial_c: (op == "LSTM").then_some(&h0),
                        p: None,
                    })
                    .expect("runs");
                for (dir, name) in ["forward", "reverse"].iter().enumerate() {
                    let (w1, r1, b1, h1) =
                        (half(&w, dir), half(&r, dir), half(&b, dir), half(&h0, dir));
                    let one = layer(name)
                        .run(&Inputs {
                            x: &x,
                            w: &w1,
                            r: &r1,
                            b: Some(&b1),
                            sequence_lens: Some(&lens),
                            initial_h: Some(&h1),
                            initial_c: (op == "LSTM").then_some(&h1),
                            p: None,
                        })
                        .expect("runs");
                    // Y [seq, 2, batch, hs]: this direction's blocks.
                    let block = batch * hs;
                    let y: Vec<f32> = (0..seq)
                        .flat_map(|t| both[0].data[(2 * t + dir) * block..][..block].to_vec())
                        .collect();
                    assert_eq!(y, one[0].data, "{op} {name} Y");
                    for k in 1..one.len() {
                        assert_eq!(half(&both[k], dir).data, one[k].data, "{op} {name} {k}");
                    }
                    assert!(one[0].data.iter().any(|&v| v != 0.0));
                }
            }
        }
    }

    /// The item `n` of `[seq, batch, ...]` (time-major) or `[dirs, batch, ...]` tensors, as a
    /// batch of one.
    fn item(t: &Tensor, n: usize) -> Tensor {
        let (outer, batch) = (t.shape[0], t.shape[1]);
        let inner: usize = t.shape[2..].iter().product();
        let mut shape = t.shape.clone();
        shape[1] = 1;
        Tensor {
            shape,
            data: (0..outer)
                .flat_map(|o| t.data[(o * batch + n) * inner..][..inner].to_vec())
                .collect(),
        }
    }

    /// Item `n` of an output whose batch axis is second to last, `[..., batch, hs]`.
    fn of_item(t: &Tensor, n: usize) -> Vec<f32> {
        let r = t.shape.len();
        let (batch, hs) = (t.shape[r - 2], t.shape[r - 1]);
        let shape = vec![t.data.len() / (batch * hs), batch, hs];
        item(
            &Tensor {
                shape,
                data: t.data.clone(),
            },
            n,
        )
        .data
    }

    /// Items are independent: a batch, whose steps multiply by SGEMM split over the cores,
    /// gives what each item alone gives (row additions, also split), and so does a batch of
    /// three (row additions gathered from the cores).
    #[test]
    fn a_batch_equals_its_items_alone() {
        let (seq, batch, input) = (3, 12, 8);
        for (op, hs, extra) in [
            ("LSTM", 192, ("input_forget", Attr::Int(0))),
            ("GRU", 210, ("linear_before_reset", Attr::Int(0))),
            ("GRU", 210, ("linear_before_reset", Attr::Int(1))),
        ] {
            let g = if op == "LSTM" { 4 } else { 3 };
            let mut seed = 11;
            let x = random(&[seq, batch, input], &mut seed, 1.0);
            let w = random(&[2, g * hs, input], &mut seed, 0.2);
            let r = random(&[2, g * hs, hs], &mut seed, 0.1);
            let b = random(&[2, 2 * g * hs], &mut seed, 0.2);
            let h0 = random(&[2, batch, hs], &mut seed, 1.0);
            let p = random(&[2, 3 * hs], &mut seed, 0.5);
            let lens: Vec<i64> = (0..batch as i64).map(|n| n % 4).collect();
            let layer = parse(
                op,
                &[
                    ("hidden_size", Attr::Int(hs as i64)),
                    ("direction", Attr::Text("bidirectional".into())),
                    ("clip", Attr::Float(2.5)),
                    extra.clone(),
                ],
            )
            .expect("valid");
            let lstm = op == "LSTM";
            let run = |x: &Tensor, h0: &Tensor, lens: &[i64]| {
                let lens = Tensor {
                    shape: vec![lens.len()],
                    data: lens.to_vec(),
                };
                layer
                    .run(&Inputs {
                        x,
                        w: &w,
                        r: &r,
                        b: Some(&b),
                        sequence_lens: Some(&lens),
                        initial_h: Some(h0),
                        initial_c: lstm.then_some(h0),
                        p: lstm.then_some(&p),
                    })
                    .expect("runs")
            };
            let all = run(&x, &h0, &lens);
            let first3 = |t: &Tensor| {
                let inner: usize = t.shape[2..].iter().product();
                let mut shape = t.shape.clone();
                shape[1] = 3;
                Tensor {
                    shape,
                    data: (0..t.shape[0])
                        .flat_map(|o| t.data[o * batch * inner..][..3 * inner].to_vec())
                        .collect(),
                }
            };
            let three = run(&first3(&x), &first3(&h0), &lens[..3]);
            for n in 0..batch {
                let one = run(&item(&x, n), &item(&h0, n), &lens[n..n + 1]);
                for k in 0..all.len() {
                    let want = &one[k].data;
                    let got = of_item(&all[k], n);
                    assert_eq!(got.len(), want.len());
                    for (i, (a, b)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5,
                            "{op} output {k} item {n}[{i}]: {a} != {b}"
                        );
                    }
                    if n < 3 {
                        for (i, (a, b)) in of_item(&three[k], n).iter().zip(want).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-5,
                                "{op} output {k} of 3, item {n}[{i}]: {a} != {b}"
                            );
                        }
                    }
                    assert!(lens[n] == 0 || want.iter().any(|&v| v != 0.0));
                }
            }
        }
    }

    /// A step's product, by each of its ways (row additions or SGEMM, on one core or split
    /// over them, straight into the output or gathered), against the definition.
    #[test]
    fn products_match_the_definition() {
        let mut seed = 3;
        for (rows, hs) in [(768, 192), (12, 3), (630, 210), (40, 9)] {
            let r = random(&[rows, hs], &mut seed, 0.5);
            let rt = {
                let mut rt = vec![0f32; rows * hs];
                transpose(&r.data, rows, hs, &mut rt);
                rt
            };
            for j in 0..rows {
                for k in 0..hs {
                    assert_eq!(
                        rt[k * rows + j],
                        r.data[j * hs + k],
                        "{rows}x{hs} at {j}, {k}"
                    );
                }
            }
            let product = Product::new(&r.data, hs);
            for batch in [1, 2, 3, 5, 12] {
                let h = random(&[batch, hs], &mut seed, 1.0);
                let mut out = vec![0f32; batch * rows];
                product.run(&h.data, &mut out, &mut Vec::new());
                for n in 0..batch {
                    for j in 0..rows {
                        let want: f64 = (0..hs)
                            .map(|k| h.data[n * hs + k] as f64 * r.data[j * hs + k] as f64)
                            .sum();
                        let got = out[n * rows + j];
                        assert!(
                            (got as f64 - want).abs() <= 1e-5,
                            "{rows}x{hs}, batch {batch}, [{n}, {j}]: {got} != {want}"
                        );
                    }
                }
            }
        }
    }

    /// The rational tanh against std's, in f64, everywhere it matters (and NaN stays NaN).
    #[test]
    fn fast_tanh_and_sigmoid_are_within_4e7() {
        let mut worst = (0f64, 0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let t = tanh(x) as f64;
            let mut s = [x];
            Act::Sigmoid.apply(&mut s);
            let sig = 1.0 / (1.0 + (-(x as f64)).exp());
            worst.0 = worst.0.max((t - (x as f64).tanh()).abs());
            worst.1 = worst.1.max((s[0] as f64 - sig).abs());
        }
        assert!(worst.0 <= 4e-7 && worst.1 <= 3e-7, "{worst:?}");
        assert!((tanh(1e30) - 1.0).abs() <= 1e-7 && (tanh(-1e30) + 1.0).abs() <= 1e-7);
        assert_eq!(tanh(0.0), 0.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn refuses_attributes_it_cannot_honour() {
        let hs = || ("hidden_size", Attr::Int(3));
        let text = |k: &'static str, v: &str| (k, Attr::Text(v.into()));
        // (op, attributes, error)
        type Case = (&'static str, Vec<(&'static str, Attr)>, &'static str);
        let cases: Vec<Case> = vec![
            ("GRU", vec![], "attribute \"hidden_size\" is required"),
            (
                "LSTM",
                vec![("hidden_size", Attr::Int(0))],
                "attribute \"hidden_size\" = 0 must be in 1..=65536",
            ),
            (
                "LSTM",
                vec![("hidden_size", Attr::Int(1 << 17))],
                "attribute \"hidden_size\" = 131072 must be in 1..=65536",
            ),
            (
                "GRU",
                vec![hs(), text("direction", "sideways")],
                "attribute \"direction\" = \"sideways\" must be forward, reverse or bidirectional",
            ),
            (
                "LSTM",
                vec![hs(), ("layout", Attr::Int(2))],
                "attribute \"layout\" must be 0 or 1, not 2",
            ),
            (
                "GRU",
                vec![hs(), ("linear_before_reset", Attr::Int(2))],
                "attribute \"linear_before_reset\" must be 0 or 1, not 2",
            ),
            (
                "LSTM",
                vec![hs(), text("direction", "bidirectional"), text("activations", "Sigmoid,Tanh,Tanh")],
                "attribute \"activations\" lists 3 function(s); a bidirectional LSTM takes 6 (f, g, h per direction)",
            ),
            (
                "GRU",
                vec![hs(), text("activations", "HardSigmoid,Tanh")],
                "activation \"HardSigmoid\" is not supported (only Sigmoid, Tanh and Relu)",
            ),
            (
                "GRU",
                vec![hs(), ("activations", Attr::Ints(vec![1, 2]))],
                "attribute \"activations\" must be a text of names separated by commas (\"Sigmoid,Tanh,Tanh\")",
            ),
            (
                "GRU",
                vec![hs(), ("activation_alpha", Attr::Floats(vec![0.5]))],
                "attribute \"activation_alpha\" is given, but none of the activations (Sigmoid, Tanh) takes it",
            ),
            (
                "LSTM",
                vec![hs(), text("activations", "Relu,Tanh,Sigmoid"), ("activation_beta", Attr::Floats(vec![1.0]))],
                "attribute \"activation_beta\" is given, but none of the activations (Relu, Tanh, Sigmoid) takes it",
            ),
            (
                "LSTM",
                vec![hs(), ("clip", Attr::Float(-1.0))],
                "attribute \"clip\" must be positive, not -1",
            ),
            (
                "GRU",
                vec![hs(), ("input_forget", Attr::Int(0))],
                "unknown attribute \"input_forget\" for GRU",
            ),
            (
                "LSTM",
                vec![hs(), ("linear_before_reset", Attr::Int(1))],
                "unknown attribute \"linear_before_reset\" for LSTM",
            ),
        ];
        for (op, attrs, want) in cases {
            assert_eq!(parse(op, &attrs), Err(want.to_string()), "{op} {attrs:?}");
        }
        // Names in any case, and an empty list of parameters, are accepted.
        let rnn = parse(
            "GRU",
            &[
                hs(),
                text("activations", "relu, TANH"),
                ("activation_alpha", Attr::Floats(Vec::new())),
                ("clip", Attr::Int(3)),
            ],
        )
        .expect("valid");
        assert_eq!(rnn.acts, vec![[Act::Relu, Act::Tanh, Act::Tanh]]);
        assert_eq!(rnn.clip, Some(3.0));
    }

    fn ty(shape: &[D]) -> VType {
        VType::new(Elem::F32, shape.to_vec())
    }

    #[test]
    fn infers_over_symbols_and_refuses_shapes_that_do_not_fit() {
        let f = |n: u64| D::Fixed(n);
        let sym = |s: &str| D::Sym(s.into());
        let lstm = parse("LSTM", &[("hidden_size", Attr::Int(3))]).expect("valid");
        let x = ty(&[sym("seq"), sym("batch"), f(2)]);
        let (w, r) = (ty(&[f(1), f(12), f(2)]), ty(&[f(1), f(12), f(3)]));
        // initial_h fixes the batch: it travels to every output.
        let h0 = ty(&[f(1), f(5), f(3)]);
        let out = lstm
            .infer(&[Some(&x), Some(&w), Some(&r), None, None, Some(&h0)])
            .expect("fits");
        assert_eq!(
            out,
            vec![
                ty(&[sym("seq"), f(1), f(5), f(3)]),
                ty(&[f(1), f(5), f(3)]),
                ty(&[f(1), f(5), f(3)]),
            ]
        );
        let bad = |ins: &[Option<&VType>]| lstm.infer(ins).expect_err("refused");
        let lens = VType::new(Elem::I64, vec![f(4)]);
        let cases: Vec<(Vec<Option<VType>>, &str)> = vec![
            (
                vec![Some(ty(&[f(4), f(2)])), Some(w.clone()), Some(r.clone())],
                "X must have rank 3, [seq_length, batch_size, input_size], not [4, 2]",
            ),
            (
                vec![Some(x.clone()), Some(ty(&[f(1), f(9), f(2)])), Some(r.clone())],
                "W has shape [1, 9, 2], but [num_directions, 4 * hidden_size, input_size] is [1, 12, 2]",
            ),
            (
                vec![Some(x.clone()), Some(ty(&[f(1), f(12), f(7)])), Some(r.clone())],
                "W has shape [1, 12, 7], but [num_directions, 4 * hidden_size, input_size] is [1, 12, 2]",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(ty(&[f(2), f(12), f(3)]))],
                "R has shape [2, 12, 3], but [num_directions, 4 * hidden_size, hidden_size] is [1, 12, 3]",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), Some(ty(&[f(1), f(12)]))],
                "B has shape [1, 12], but [num_directions, 8 * hidden_size] is [1, 24]",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), None, Some(ty(&[f(4)]))],
                "sequence_lens must be integers, not F32",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), None, Some(lens.clone()), Some(h0.clone())],
                "initial_h has shape [1, 5, 3], but [num_directions, batch_size, hidden_size] is [1, 4, 3]",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), None, None, None, Some(ty(&[f(1), f(5), f(4)]))],
                "initial_c has shape [1, 5, 4], but [num_directions, batch_size, hidden_size] is [1, batch, 3]",
            ),
            (
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), None, None, None, None, Some(ty(&[f(1), f(12)]))],
                "P has shape [1, 12], but [num_directions, 3 * hidden_size] is [1, 9]",
            ),
            (
                vec![Some(ty(&[f(1 << 30), f(1 << 20), f(2)])), Some(w.clone()), Some(r.clone())],
                "1073741824 steps of 1048576 items need 1073741824 * 1048576 * 12 gate values, more than nnsign can hold",
            ),
            (
                vec![Some(x.clone()), Some(VType::new(Elem::I64, vec![f(1), f(12), f(2)])), Some(r.clone())],
                "W must be F32, not I64",
            ),
        ];
        for (ins, want) in cases {
            let ins: Vec<Option<&VType>> = ins.iter().map(Option::as_ref).collect();
            assert_eq!(bad(&ins), want);
        }
        // Batch-first: the states hold the batch first.
        let gru = parse(
            "GRU",
            &[("hidden_size", Attr::Int(3)), ("layout", Attr::Int(1))],
        )
        .expect("valid");
        let (w, r) = (ty(&[f(1), f(9), f(2)]), ty(&[f(1), f(9), f(3)]));
        let x = ty(&[sym("batch"), sym("seq"), f(2)]);
        let h0 = ty(&[f(1), f(5), f(3)]);
        assert_eq!(
            gru.infer(&[Some(&x), Some(&w), Some(&r), None, None, Some(&h0)]),
            Err("initial_h has shape [1, 5, 3], but [batch_size, num_directions, hidden_size] is [batch, 1, 3]".into())
        );
        let out = gru
            .infer(&[Some(&x), Some(&w), Some(&r), None, Some(&lens)])
            .expect("fits");
        assert_eq!(
            out,
            vec![ty(&[f(4), sym("seq"), f(1), f(3)]), ty(&[f(4), f(1), f(3)])]
        );
        let seven = [Some(&x), Some(&w), Some(&r), None, None, None, Some(&h0)];
        assert_eq!(
            gru.infer(&seven),
            Err("takes at most 6 inputs, 7 given".into())
        );
    }

    #[test]
    fn refuses_sequence_lengths_outside_the_sequence() {
        let gru = parse("GRU", &[("hidden_size", Attr::Int(2))]).expect("valid");
        let mut seed = 5;
        let x = random(&[4, 2, 3], &mut seed, 1.0);
        let w = random(&[1, 6, 3], &mut seed, 1.0);
        let r = random(&[1, 6, 2], &mut seed, 1.0);
        for (lens, want) in [
            (vec![4, -1], "sequence_lens[1] = -1 is outside 0..=4"),
            (vec![5, 2], "sequence_lens[0] = 5 is outside 0..=4"),
        ] {
            let lens = Tensor {
                shape: vec![2],
                data: lens,
            };
            let ins = Inputs {
                x: &x,
                w: &w,
                r: &r,
                b: None,
                sequence_lens: Some(&lens),
                initial_h: None,
                initial_c: None,
                p: None,
            };
            assert_eq!(gru.run(&ins), Err(want.to_string()));
        }
    }
}
