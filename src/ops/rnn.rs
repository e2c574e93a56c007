//! Recurrent layers: ONNX `LSTM` and `GRU` (op-sets 14 to 22), forward, reverse or in both
//! directions, time-major (`layout` 0) or batch-major (`layout` 1), with per-item sequence
//! lengths.
//!
//! The input projection `X·Wᵀ` of every time step, for both directions, is one product before
//! the recurrence starts, so each step multiplies only the hidden state by `Rᵀ`: the part that
//! cannot be batched over time. Both run on `Wᵀ` and `Rᵀ` packed once a run into panels that
//! the SIMD kernels of `sys` stream ([`Panels`]). The two directions of a bidirectional layer,
//! and blocks of a batch's items, share nothing after the projection: each runs every step on
//! its own core; a lone item splits each step's product over the cores instead.

use super::shape::{fmt_shape, same, VType, D};
use super::{float, positive, spread, Attrs};
use crate::memory::MAX_ELEMENTS;
use crate::model::Attr;
use crate::sys::{panel_product, wide, Panels, Wide, PANEL};
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

    /// Inlined, like the rest of a step's element-wise work, into the step's [`wide`] run.
    #[inline(always)]
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
    /// (`seq * batch * num_directions * gates * hidden_size`, the bulk), `Wᵀ` packed, and for
    /// each direction (both at once when bidirectional), `Rᵀ` packed (in up to two parts, each
    /// padded to whole panels) and the states and gates of one step.
    pub(crate) fn scratch_floats(&self, x: &[usize]) -> u64 {
        let [a, b, input] = x else { return 0 };
        let batch = if self.batch_first { *a } else { *b } as u64;
        let (dirs, gh, hs) = (
            self.dirs() as u64,
            (self.gates() * self.hidden) as u64,
            self.hidden as u64,
        );
        let panel = PANEL as u64;
        let wt = (dirs * gh + 2 * panel).saturating_mul(*input as u64);
        let per_dir = ((gh + 2 * panel) * hs + 2 * panel + hs)
            .saturating_add(batch.saturating_mul(2 * gh + 2 * hs));
        (*a as u64)
            .saturating_mul(*b as u64)
            .saturating_mul(dirs * gh)
            .saturating_add(wt)
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
            let work = (seq * batch).saturating_mul(d.gh * (d.hs + 8));
            let par = spread(work.saturating_mul(d.dirs), PAR_FLOPS);
            let share = Share::new(&d, par);
            let tasks = share.tasks(&mut y, &d);
            let all = || {
                let bias = self.biases(ins, &d);
                let input = match share.ahead {
                    true => Projection::Ahead(self.project(ins, &d, bias.as_deref())),
                    false => Projection::AsItGoes {
                        wt: (0..d.dirs)
                            .map(|dir| {
                                let w = &ins.w.data[dir * d.gh * d.input..][..d.gh * d.input];
                                Panels::transposed(w, d.gh, d.input, par)
                            })
                            .collect(),
                        bias,
                    },
                };
                let recs: Vec<Vec<Product>> = (0..d.dirs)
                    .map(|dir| self.products(ins, dir, par))
                    .collect();
                let one = |task: Task<'_>| {
                    let rec = &recs[task.dir];
                    self.direction(task, ins, &input, &lens, rec, &d, share.split)
                };
                match par && tasks.len() > 1 {
                    true => {
                        use rayon::prelude::*;
                        tasks.into_par_iter().map(one).collect::<Vec<_>>()
                    }
                    false => tasks.into_iter().map(one).collect(),
                }
            };
            // On a core of the pool, the steps' own splits are cheap: from outside it, each
            // would wait for the pool to wake and take it.
            let finals = if par { rayon::scope(|_| all()) } else { all() };
            for (dir, items, h, c) in finals {
                for (i, n) in items.enumerate() {
                    if lens[n] == 0 {
                        continue;
                    }
                    let at = d.state_at(n, dir);
                    let row = i * d.hs..(i + 1) * d.hs;
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

    /// The biases that do not depend on the state, `[dirs * gh]`: `Wb + Rb`, but for the
    /// candidate of a GRU with linear_before_reset, `Wbh` alone.
    fn biases(&self, ins: &Inputs<'_>, d: &Dims) -> Option<Vec<f32>> {
        ins.b.map(|b| {
            let mut bias = Vec::with_capacity(d.dirs * d.gh);
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
            bias
        })
    }

    /// `X·Wᵀ` plus `bias` ([`Rnn::biases`]) for every step and direction: `[seq * batch, dirs
    /// * gh]`, rows in `X`'s order, split by rows over the cores when large.
    fn project(&self, ins: &Inputs<'_>, d: &Dims, bias: Option<&[f32]>) -> Vec<f32> {
        let (rows, cols) = (d.seq * d.batch, d.dirs * d.gh);
        let par = spread(rows * cols * d.input.max(1), PAR_FLOPS);
        // W is [dirs * gh, input]: packed transposed, it is [input, dirs * gh].
        let wt = Panels::transposed(&ins.w.data, cols, d.input, par);
        let mut xw = vec![0f32; rows * cols];
        // Blocks of rows, two per core, so that a core that starts late still ends in time.
        let threads = if par { rayon::current_num_threads() } else { 1 };
        let per = rows.div_ceil(2 * threads);
        super::chunks(&mut xw, per * cols, par, |i, block| {
            let x = &ins.x.data[i * per * d.input..][..block.len() / cols * d.input];
            panel_product(x, &wt, 0..wt.panels(), bias, block);
        });
        xw
    }

    /// Direction `dir`'s `Rᵀ`, packed: for a GRU without linear_before_reset, the rows of the
    /// update and reset gates apart from the candidate's, which multiply `r * h`; otherwise
    /// all of them.
    fn products(&self, ins: &Inputs<'_>, dir: usize, par: bool) -> Vec<Product> {
        let (hs, gh) = (self.hidden, self.gates() * self.hidden);
        let r = &ins.r.data[dir * gh * hs..(dir + 1) * gh * hs];
        match self.cell {
            Cell::Gru {
                linear_before_reset: false,
            } => {
                let (zr, h) = r.split_at(2 * hs * hs);
                vec![Product::new(zr, hs, par), Product::new(h, hs, par)]
            }
            _ => vec![Product::new(r, hs, par)],
        }
    }

    /// Runs the items of `task` in its direction over every step, writing their rows of `Y`;
    /// returns the direction, the items, and their final hidden and (LSTM) cell states,
    /// `[items, hs]` each (meaningful for the items of nonzero length). `rec` holds the
    /// direction's products ([`Rnn::products`]); with `split`, each step's is split over the
    /// cores.
    #[allow(clippy::too_many_arguments)]
    fn direction(
        &self,
        task: Task<'_>,
        ins: &Inputs<'_>,
        input: &Projection,
        lens: &[usize],
        rec: &[Product],
        d: &Dims,
        split: bool,
    ) -> (usize, std::ops::Range<usize>, Vec<f32>, Vec<f32>) {
        let Task { dir, items, parts } = task;
        let mut y = Rows { parts, d: *d };
        let (hs, gh, count) = (d.hs, d.gh, items.len());
        let reverse = self.direction == Direction::Reverse || dir == 1;
        let initial = |t: Option<&Tensor>| {
            let mut s = vec![0f32; count * hs];
            if let Some(t) = t {
                for (row, n) in s.chunks_mut(hs).zip(items.clone()) {
                    let at = d.state_at(n, dir);
                    row.copy_from_slice(&t.data[at..at + hs]);
                }
            }
            s
        };
        let mut h = initial(ins.initial_h);
        let mut tmp = Vec::new();
        let mut step_input = StepInput {
            input,
            d,
            dir,
            items: items.clone(),
            x: &ins.x.data,
            gathered: Vec::new(),
            xw: Vec::new(),
        };
        let lens = &lens[items.clone()];
        let steps = (0..d.seq).map(|s| if reverse { d.seq - 1 - s } else { s });
        let (acts, clip) = (self.acts[dir], self.clip);
        let out = match self.cell {
            Cell::Lstm { input_forget } => {
                let mut c = initial(ins.initial_c);
                let mut gates = vec![0f32; count * gh];
                let mut act = vec![0f32; hs];
                let cell = LstmStep {
                    acts,
                    clip,
                    input_forget,
                    p: ins.p.map(|p| &p.data[dir * 3 * hs..(dir + 1) * 3 * hs]),
                };
                for t in steps {
                    rec[0].run(&h, &mut gates, split, &mut tmp);
                    wide(LstmItems {
                        cell: &cell,
                        t,
                        lens,
                        x: step_input.at(t),
                        gates: &mut gates,
                        h: &mut h,
                        c: &mut c,
                        act: &mut act,
                        y: &mut y,
                    });
                }
                (h, c)
            }
            Cell::Gru {
                linear_before_reset: true,
            } => {
                let rbh = ins.b.map(|b| &b.data[dir * 2 * gh + gh + 2 * hs..][..hs]);
                let mut gates = vec![0f32; count * gh];
                for t in steps {
                    rec[0].run(&h, &mut gates, split, &mut tmp);
                    wide(GruItems {
                        acts,
                        clip,
                        hs,
                        rbh,
                        t,
                        lens,
                        x: step_input.at(t),
                        gates: &mut gates,
                        h: &mut h,
                        y: &mut y,
                    });
                }
                (h, Vec::new())
            }
            Cell::Gru {
                linear_before_reset: false,
            } => {
                // The candidate needs (r * h)·Rhᵀ: a second product once r is known.
                let mut zr = vec![0f32; count * 2 * hs];
                let mut rh = vec![0f32; count * hs];
                let mut hh = vec![0f32; count * hs];
                for t in steps {
                    rec[0].run(&h, &mut zr, split, &mut tmp);
                    let x = step_input.at(t);
                    wide(GruReset {
                        f: acts[0],
                        clip,
                        hs,
                        x,
                        zr: &mut zr,
                        h: &h,
                        rh: &mut rh,
                    });
                    rec[1].run(&rh, &mut hh, split, &mut tmp);
                    wide(GruCandidate {
                        g: acts[1],
                        clip,
                        hs,
                        t,
                        lens,
                        x,
                        zr: &zr,
                        hh: &mut hh,
                        h: &mut h,
                        y: &mut y,
                    });
                }
                (h, Vec::new())
            }
        };
        (dir, items, out.0, out.1)
    }
}

/// Where the tasks find each step's `X·Wᵀ` plus biases.
enum Projection {
    /// Every step's, computed before the recurrence ([`Rnn::project`]).
    Ahead(Vec<f32>),
    /// Each step's, computed by each task as it goes: `Wᵀ` packed, a direction each, and the
    /// biases ([`Rnn::biases`]).
    AsItGoes {
        wt: Vec<Panels>,
        bias: Option<Vec<f32>>,
    },
}

/// One task's view of the [`Projection`], with its working memory.
struct StepInput<'a> {
    input: &'a Projection,
    d: &'a Dims,
    dir: usize,
    items: std::ops::Range<usize>,
    /// `X`'s data.
    x: &'a [f32],
    /// The items' rows of `X` at a step, when they are not adjacent in `X`.
    gathered: Vec<f32>,
    /// The items' `X·Wᵀ` at a step, when computed as it goes.
    xw: Vec<f32>,
}

impl StepInput<'_> {
    /// The rows of step `t`.
    fn at(&mut self, t: usize) -> XRows<'_> {
        let (d, first, count) = (self.d, self.items.start, self.items.len());
        // Row `X[t][n]` (time-major) or `X[n][t]` (batch-major).
        let row = |n: usize| {
            if d.batch_first {
                n * d.seq + t
            } else {
                t * d.batch + n
            }
        };
        let stride = |rows: usize| if d.batch_first { rows * d.seq } else { rows };
        match self.input {
            Projection::Ahead(xw) => {
                let at = row(first) * d.dirs * d.gh + self.dir * d.gh;
                XRows {
                    data: &xw[at..],
                    stride: stride(d.dirs * d.gh),
                    len: d.gh,
                }
            }
            Projection::AsItGoes { wt, bias } => {
                let x = match d.batch_first {
                    false => &self.x[row(first) * d.input..][..count * d.input],
                    true => {
                        self.gathered.clear();
                        for n in self.items.clone() {
                            let x = &self.x[row(n) * d.input..][..d.input];
                            self.gathered.extend_from_slice(x);
                        }
                        &self.gathered
                    }
                };
                let wt = &wt[self.dir];
                let bias = bias
                    .as_deref()
                    .map(|b| &b[self.dir * d.gh..(self.dir + 1) * d.gh]);
                self.xw.resize(count * d.gh, 0.0);
                panel_product(x, wt, 0..wt.panels(), bias, &mut self.xw);
                XRows {
                    data: &self.xw,
                    stride: d.gh,
                    len: d.gh,
                }
            }
        }
    }
}

/// One step's rows of `X·Wᵀ` plus biases for a task's items: item `i`'s at `i * stride`.
#[derive(Clone, Copy)]
struct XRows<'a> {
    data: &'a [f32],
    stride: usize,
    len: usize,
}

impl XRows<'_> {
    #[inline(always)]
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.stride..][..self.len]
    }
}

/// The element-wise part of an LSTM step `t`, for a task's items still running (`t <
/// lens[i]`): `gates` holds `h·Rᵀ`, `[items, 4 * hs]`; `h` and `c` are updated, and the new `h`
/// written to `Y`. Like the other steps below, it runs through [`wide`], and so everything it
/// calls is `#[inline(always)]`.
struct LstmItems<'a, 'y> {
    cell: &'a LstmStep<'a>,
    t: usize,
    lens: &'a [usize],
    x: XRows<'a>,
    gates: &'a mut [f32],
    h: &'a mut [f32],
    c: &'a mut [f32],
    act: &'a mut [f32],
    y: &'a mut Rows<'y>,
}

impl Wide for LstmItems<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hs = self.act.len();
        let gh = 4 * hs;
        for (i, &len) in self.lens.iter().enumerate() {
            if self.t >= len {
                continue;
            }
            let rows = i * hs..(i + 1) * hs;
            self.cell.step(
                &mut self.gates[i * gh..(i + 1) * gh],
                self.x.row(i),
                &mut self.h[rows.clone()],
                &mut self.c[rows.clone()],
                self.act,
            );
            self.y.row(self.t, i).copy_from_slice(&self.h[rows]);
        }
    }
}

/// The element-wise part of a GRU step with linear_before_reset (see [`LstmItems`]): `gates`
/// holds `h·Rᵀ`, `[items, 3 * hs]`, `rbh` is `Rbh`.
struct GruItems<'a, 'y> {
    acts: [Act; 3],
    clip: Option<f32>,
    hs: usize,
    rbh: Option<&'a [f32]>,
    t: usize,
    lens: &'a [usize],
    x: XRows<'a>,
    gates: &'a mut [f32],
    h: &'a mut [f32],
    y: &'a mut Rows<'y>,
}

impl Wide for GruItems<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let (hs, gh) = (self.hs, 3 * self.hs);
        for (i, &len) in self.lens.iter().enumerate() {
            if self.t >= len {
                continue;
            }
            let rows = i * hs..(i + 1) * hs;
            let (zr, hh) = self.gates[i * gh..(i + 1) * gh].split_at_mut(2 * hs);
            let x = self.x.row(i);
            gru_gates(zr, &x[..2 * hs], self.acts[0], self.clip);
            let (z, rg) = zr.split_at(hs);
            // hh holds h·Rhᵀ: the candidate is g(xh + r * (h·Rhᵀ + Rbh)).
            if let Some(rbh) = self.rbh {
                add(hh, rbh);
            }
            for ((v, &r), &x) in hh.iter_mut().zip(rg).zip(&x[2 * hs..]) {
                *v = x + r * *v;
            }
            gru_finish(hh, z, &mut self.h[rows.clone()], self.acts[1], self.clip);
            self.y.row(self.t, i).copy_from_slice(&self.h[rows]);
        }
    }
}

/// The update and reset gates of a GRU step without linear_before_reset, for every item of a
/// task: `zr` holds `h·Rᵀ` of both, `[items, 2 * hs]`, and gets the gates; `rh` gets `r * h`.
struct GruReset<'a> {
    f: Act,
    clip: Option<f32>,
    hs: usize,
    x: XRows<'a>,
    zr: &'a mut [f32],
    h: &'a [f32],
    rh: &'a mut [f32],
}

impl Wide for GruReset<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hs = self.hs;
        let each = self
            .zr
            .chunks_exact_mut(2 * hs)
            .zip(self.rh.chunks_exact_mut(hs));
        for (i, ((g, rh), h)) in each.zip(self.h.chunks_exact(hs)).enumerate() {
            gru_gates(g, &self.x.row(i)[..2 * hs], self.f, self.clip);
            for ((v, &r), &h) in rh.iter_mut().zip(&g[hs..]).zip(h) {
                *v = r * h;
            }
        }
    }
}

/// The candidate and new state of a GRU step without linear_before_reset (see
/// [`LstmItems`]): `hh` holds `(r * h)·Rhᵀ`, `zr` the gates.
struct GruCandidate<'a, 'y> {
    g: Act,
    clip: Option<f32>,
    hs: usize,
    t: usize,
    lens: &'a [usize],
    x: XRows<'a>,
    zr: &'a [f32],
    hh: &'a mut [f32],
    h: &'a mut [f32],
    y: &'a mut Rows<'y>,
}

impl Wide for GruCandidate<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hs = self.hs;
        for (i, &len) in self.lens.iter().enumerate() {
            if self.t >= len {
                continue;
            }
            let rows = i * hs..(i + 1) * hs;
            let v = &mut self.hh[rows.clone()];
            add(v, &self.x.row(i)[2 * hs..]);
            let z = &self.zr[i * 2 * hs..i * 2 * hs + hs];
            gru_finish(v, z, &mut self.h[rows.clone()], self.g, self.clip);
            self.y.row(self.t, i).copy_from_slice(&self.h[rows]);
        }
    }
}

/// Items a core takes from which it runs them alone over every step (each core then streams
/// all of `Rᵀ` every step) rather than splitting each step's product with the other cores.
const ALONE_ITEMS: usize = 4;

/// Bytes of `Rᵀ` up to which a core runs its items alone however few they are: `Rᵀ` then
/// stays in its L2 cache.
const ALONE_BYTES: usize = 256 << 10;

/// Items a task takes from which each of its steps projects their inputs itself.
const STEP_ITEMS: usize = 8;

/// How a layer's work is shared among the cores: first by direction; then, with cores to
/// spare, by blocks of items, each run over every step on one core, without waiting for the
/// others; or, when there are too few items for that, by splitting each step's product.
struct Share {
    /// Blocks of items per direction.
    blocks: usize,
    /// Whether each step's product is split over the cores.
    split: bool,
    /// Whether `X·Wᵀ` is computed for every step before the recurrence ([`Projection`]).
    ahead: bool,
}

/// The items of one direction that one task runs, with their rows of `Y`.
struct Task<'a> {
    dir: usize,
    items: std::ops::Range<usize>,
    /// Time-major: the items' rows of each step; batch-major: each item's row of each step.
    parts: Vec<&'a mut [f32]>,
}

impl Share {
    fn new(d: &Dims, par: bool) -> Share {
        let threads = if par { rayon::current_num_threads() } else { 1 };
        let per_dir = (threads / d.dirs).max(1);
        let r_bytes = d.gh * d.hs * 4;
        let (blocks, split) = if per_dir == 1 {
            (1, false)
        } else if d.batch >= per_dir * ALONE_ITEMS || (d.batch >= per_dir && r_bytes <= ALONE_BYTES)
        {
            (per_dir, false)
        } else {
            (1, true)
        };
        // When a task has enough items that each read of `W` serves many, each of its steps
        // projects their inputs itself: their `X·Wᵀ` then stays in cache for the step, where
        // the whole projection, computed ahead, would be read back from memory.
        let ahead = d.batch / blocks < STEP_ITEMS;
        Share {
            blocks,
            split,
            ahead,
        }
    }

    /// Items of block `b`.
    fn items(&self, b: usize, d: &Dims) -> std::ops::Range<usize> {
        b * d.batch / self.blocks..(b + 1) * d.batch / self.blocks
    }

    /// The tasks, direction by direction, each with its rows of `y` (`Y`'s data).
    fn tasks<'a>(&self, y: &'a mut [f32], d: &Dims) -> Vec<Task<'a>> {
        let mut tasks: Vec<Task<'a>> = (0..d.dirs)
            .flat_map(|dir| {
                (0..self.blocks).map(move |b| Task {
                    dir,
                    items: self.items(b, d),
                    parts: Vec::new(),
                })
            })
            .collect();
        if d.batch_first {
            // [batch, seq, dirs, hs]: rows of hs, item by item, step by step.
            for (k, row) in y.chunks_mut(d.hs).enumerate() {
                let (n, dir) = (k / (d.seq * d.dirs), k % d.dirs);
                let b = (0..self.blocks)
                    .find(|&b| self.items(b, d).contains(&n))
                    .expect("the blocks cover the batch");
                tasks[dir * self.blocks + b].parts.push(row);
            }
        } else {
            // [seq, dirs, batch, hs]: each step's block of a direction, cut by items.
            for (k, mut rest) in y.chunks_mut(d.batch * d.hs).enumerate() {
                let dir = k % d.dirs;
                for b in 0..self.blocks {
                    let (part, tail) = rest.split_at_mut(self.items(b, d).len() * d.hs);
                    tasks[dir * self.blocks + b].parts.push(part);
                    rest = tail;
                }
            }
        }
        tasks
    }
}

/// The product `h·Rᵀ` of every step, for some gate rows `R` (`[rows, hs]`) of one direction,
/// with `Rᵀ` packed once.
struct Product {
    hs: usize,
    rows: usize,
    rt: Panels,
}

impl Product {
    fn new(r: &[f32], hs: usize, par: bool) -> Product {
        Product {
            hs,
            rows: r.len() / hs,
            rt: Panels::transposed(r, r.len() / hs, hs, par),
        }
    }

    /// `out = h·Rᵀ`, `[batch, rows]` for `h` `[batch, hs]`. With `split`, when large enough,
    /// by columns over the cores (`tmp` gathers their parts when there are several items).
    fn run(&self, h: &[f32], out: &mut [f32], split: bool, tmp: &mut Vec<f32>) {
        let rows = self.rows;
        let batch = h.len() / self.hs;
        let panels = self.rt.panels();
        if !(split && spread(out.len() * self.hs, PAR_FLOPS)) {
            return panel_product(h, &self.rt, 0..panels, None, out);
        }
        // Split by panels, so that each core streams only its part of `Rᵀ` (which then stays
        // in its cache from step to step); each writes its columns of every item, `[batch,
        // cols]`, straight into `out` when that is one item.
        let per = panels.div_ceil(rayon::current_num_threads());
        let direct = batch == 1;
        let dst: &mut [f32] = if direct {
            out
        } else {
            tmp.resize(batch * rows, 0.0);
            tmp
        };
        super::chunks(dst, per * PANEL * batch, true, |i, d| {
            let part = i * per..((i + 1) * per).min(panels);
            panel_product(h, &self.rt, part, None, d);
        });
        if !direct {
            for (i, part) in tmp.chunks(per * PANEL * batch).enumerate() {
                let cols = part.len() / batch;
                for (n, src) in part.chunks_exact(cols).enumerate() {
                    out[n * rows + i * per * PANEL..][..cols].copy_from_slice(src);
                }
            }
        }
    }
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

/// One task's rows of `Y` (see [`Task`]).
struct Rows<'a> {
    parts: Vec<&'a mut [f32]>,
    d: Dims,
}

impl Rows<'_> {
    /// The output of step `t` for the task's item `i`.
    #[inline(always)]
    fn row(&mut self, t: usize, i: usize) -> &mut [f32] {
        let hs = self.d.hs;
        match self.d.batch_first {
            false => &mut self.parts[t][i * hs..(i + 1) * hs],
            true => &mut self.parts[i * self.d.seq + t][..],
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
    #[inline(always)]
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
#[inline(always)]
fn gru_gates(zr: &mut [f32], x: &[f32], f: Act, bound: Option<f32>) {
    add(zr, x);
    clip(zr, bound);
    f.apply(zr);
}

/// A GRU's new state from the candidate's input `v` (clipped and activated here) and the
/// update gate `z`: `h = (1 - z) * g(v) + z * h`.
#[inline(always)]
fn gru_finish(v: &mut [f32], z: &[f32], h: &mut [f32], g: Act, bound: Option<f32>) {
    clip(v, bound);
    g.apply(v);
    for ((h, &v), &z) in h.iter_mut().zip(&*v).zip(z) {
        *h = (1.0 - z) * v + z * *h;
    }
}

#[inline(always)]
fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
}

/// `a += p * c`, element by element (a peephole).
#[inline(always)]
fn mul_add(a: &mut [f32], p: &[f32], c: &[f32]) {
    for ((a, &p), &c) in a.iter_mut().zip(p).zip(c) {
        *a += p * c;
    }
}

#[inline(always)]
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

    /// `t` with its axes permuted: axis `i` of the result is axis `perm[i]` of `t`.
    fn permute(t: &Tensor, perm: &[usize]) -> Tensor {
        let shape: Vec<usize> = perm.iter().map(|&a| t.shape[a]).collect();
        let mut strides = vec![1; t.shape.len()];
        for a in (0..t.shape.len() - 1).rev() {
            strides[a] = strides[a + 1] * t.shape[a + 1];
        }
        let data = (0..t.data.len())
            .map(|mut i| {
                let mut at = 0;
                for (k, &a) in perm.iter().enumerate().rev() {
                    at += i % shape[k] * strides[a];
                    i /= shape[k];
                }
                t.data[at]
            })
            .collect();
        Tensor { shape, data }
    }

    /// Items are independent, however the work is shared: a batch gives the same bits as each
    /// item alone, and as three items, and as the batch laid out batch-major. Forward, 17 items
    /// run as two blocks, one per core, and the lone items split each step's product over the
    /// cores (`R` is too large for one core's cache), gathered for three; bidirectional, a
    /// core runs each direction. Tasks of 8 items or more project their inputs step by step
    /// (gathered from `X` batch-major), fewer all at once ahead.
    #[test]
    fn a_batch_equals_its_items_alone() {
        let (seq, batch, input) = (3, 17, 8);
        for (op, hs, extra) in [
            ("LSTM", 192, ("input_forget", Attr::Int(0))),
            ("GRU", 210, ("linear_before_reset", Attr::Int(0))),
            ("GRU", 210, ("linear_before_reset", Attr::Int(1))),
        ] {
            for direction in ["bidirectional", "forward"] {
                let g = if op == "LSTM" { 4 } else { 3 };
                let dirs = if direction == "forward" { 1 } else { 2 };
                let mut seed = 11;
                let x = random(&[seq, batch, input], &mut seed, 1.0);
                let w = random(&[dirs, g * hs, input], &mut seed, 0.2);
                let r = random(&[dirs, g * hs, hs], &mut seed, 0.1);
                let b = random(&[dirs, 2 * g * hs], &mut seed, 0.2);
                let h0 = random(&[dirs, batch, hs], &mut seed, 1.0);
                let p = random(&[dirs, 3 * hs], &mut seed, 0.5);
                let lens: Vec<i64> = (0..batch as i64).map(|n| n % 4).collect();
                let lstm = op == "LSTM";
                let run = |x: &Tensor, h0: &Tensor, lens: &[i64], layout: i64| {
                    let layer = parse(
                        op,
                        &[
                            ("hidden_size", Attr::Int(hs as i64)),
                            ("direction", Attr::Text(direction.into())),
                            ("clip", Attr::Float(2.5)),
                            ("layout", Attr::Int(layout)),
                            extra.clone(),
                        ],
                    )
                    .expect("valid");
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
                let all = run(&x, &h0, &lens, 0);
                let swap = [1, 0, 2];
                let batch_major = run(&permute(&x, &swap), &permute(&h0, &swap), &lens, 1);
                for (k, out) in batch_major.iter().enumerate() {
                    let back = match k {
                        0 => permute(out, &[1, 2, 0, 3]),
                        _ => permute(out, &swap),
                    };
                    assert!(back == all[k], "{op} {direction} batch-major output {k}");
                }
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
                let three = run(&first3(&x), &first3(&h0), &lens[..3], 0);
                for n in 0..batch {
                    let one = run(&item(&x, n), &item(&h0, n), &lens[n..n + 1], 0);
                    for k in 0..all.len() {
                        let want = &one[k].data;
                        let got = of_item(&all[k], n);
                        assert!(&got == want, "{op} {direction} output {k} item {n}");
                        if n < 3 {
                            let got = of_item(&three[k], n);
                            assert!(&got == want, "{op} {direction} output {k} of 3, item {n}");
                        }
                        assert!(lens[n] == 0 || want.iter().any(|&v| v != 0.0));
                    }
                }
            }
        }
    }

    /// With `input_size` 0, `X·Wᵀ` is the biases alone, computed ahead (1 item) or step by
    /// step (20): what a zero input of size 1 gives.
    #[test]
    fn an_input_of_size_zero_leaves_the_biases() {
        let hs = 5;
        for batch in [1, 20] {
            let mut seed = 9;
            let r = random(&[1, 4 * hs, hs], &mut seed, 0.5);
            let b = random(&[1, 8 * hs], &mut seed, 0.5);
            let layer = parse("LSTM", &[("hidden_size", Attr::Int(hs as i64))]).expect("valid");
            let run = |input: usize| {
                let x = Tensor {
                    shape: vec![3, batch, input],
                    data: vec![0.0; 3 * batch * input],
                };
                let w = random(&[1, 4 * hs, input], &mut 1, 1.0);
                let ins = Inputs {
                    x: &x,
                    w: &w,
                    r: &r,
                    b: Some(&b),
                    sequence_lens: None,
                    initial_h: None,
                    initial_c: None,
                    p: None,
                };
                let types = [&x, &w, &r, &b].map(|t| fixed(&t.shape));
                layer.infer(&types.each_ref().map(Some)).expect("fits");
                layer.run(&ins).expect("runs")
            };
            let (none, zero) = (run(0), run(1));
            assert!(none == zero && none[0].data.iter().any(|&v| v != 0.0));
        }
    }

    /// A step's product, on one core or split over them (straight into the output, or
    /// gathered), against the definition, and the same bits either way.
    #[test]
    fn products_match_the_definition() {
        let mut seed = 3;
        for (rows, hs) in [(768, 192), (12, 3), (630, 210), (40, 9)] {
            let r = random(&[rows, hs], &mut seed, 0.5);
            let product = Product::new(&r.data, hs, true);
            for batch in [1, 2, 3, 5, 12] {
                let h = random(&[batch, hs], &mut seed, 1.0);
                let mut out = vec![0f32; batch * rows];
                product.run(&h.data, &mut out, false, &mut Vec::new());
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
                let mut split = vec![0f32; batch * rows];
                rayon::scope(|_| product.run(&h.data, &mut split, true, &mut Vec::new()));
                assert_eq!(split, out, "{rows}x{hs}, batch {batch}");
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
