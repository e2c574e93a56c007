//! `Einsum` of one or two F32 operands, done as real models need it: the diagonal of a label
//! repeated in one operand, sums over labels only one operand has, then one batched SGEMM with
//! the labels both share (kept ones as the batch, the others contracted), the operands read in
//! place when their layout allows (transposed or not) and copied into it otherwise, and a final
//! permutation into the output's order when the product's is not it.
//!
//! Equations follow ONNX: letters (case-sensitive) and at most one `...` per term, spaces
//! ignored; with `->` the output is explicit, without it the letters that appear once, sorted
//! (upper case first), after the `...` dimensions if any. Every `...` must stand for the same
//! number of dimensions (as ONNX says and onnxruntime checks); its dimensions broadcast
//! against each other (NumPy's rule), while a letter's sizes must be equal. An explicit output
//! without `...` sums over the dimensions `...` stands for (as NumPy does; onnxruntime refuses
//! such equations). Three or more operands are refused.

use super::linalg::gemm;
use super::movement::{strided, strides};
use super::reduce::sum_over;
use super::shape::{self, fmt_shape, same, VType, D};
use super::{chunks, float, spread, Attrs};
use crate::sys::{sgemm_view, MatRef};
use crate::tensor::{Elem, Tensor};
use std::borrow::Cow;

/// Labels: `A`..`Z` are 0..26 and `a`..`z` 26..52 (so that their order is ASCII's), the
/// dimensions `...` stands for 52 on.
const LETTERS: usize = 52;

/// Most operands an equation may have.
const MAX_OPERANDS: usize = 2;

/// One symbol of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Letter(usize),
    Dots,
}

/// `Einsum`'s equation, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Einsum {
    equation: String,
    terms: Vec<Vec<Tok>>,
    output: Vec<Tok>,
}

fn letter_name(l: usize) -> char {
    let base = if l < 26 { b'A' } else { b'a' - 26 };
    (base + l as u8) as char
}

/// The symbols of one term.
fn term(s: &str, equation: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("...") {
            if out.contains(&Tok::Dots) {
                return Err(format!(
                    "equation {equation:?}: term {s:?} has \"...\" twice"
                ));
            }
            out.push(Tok::Dots);
            rest = r;
            continue;
        }
        let l = match c {
            'A'..='Z' => c as usize - 'A' as usize,
            'a'..='z' => c as usize - 'a' as usize + 26,
            _ => {
                return Err(format!(
                    "equation {equation:?}: {c:?} is not a label (letters, and \"...\")"
                ))
            }
        };
        out.push(Tok::Letter(l));
        rest = &rest[1..];
    }
    Ok(out)
}

/// The labels of each operand and of the output, for operands of given ranks: letters as
/// themselves, the `...` of each as `LETTERS..LETTERS + e`.
struct Spec {
    ins: Vec<Vec<usize>>,
    out: Vec<usize>,
}

impl Einsum {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Einsum, String> {
        let equation = a
            .text("equation")?
            .ok_or("attribute \"equation\" is required")?;
        Einsum::new(equation)
    }

    fn new(equation: &str) -> Result<Einsum, String> {
        let eq: String = equation.chars().filter(|&c| c != ' ').collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let terms: Vec<Vec<Tok>> = (lhs.split(','))
            .map(|t| term(t, equation))
            .collect::<Result<_, _>>()?;
        if terms.len() > MAX_OPERANDS {
            return Err(format!(
                "equation {equation:?} has {} operands; nnsign's Einsum takes 1 or 2",
                terms.len()
            ));
        }
        let mut count = [0usize; LETTERS];
        for t in &terms {
            for tok in t {
                if let Tok::Letter(l) = tok {
                    count[*l] += 1;
                }
            }
        }
        let dots = terms.iter().any(|t| t.contains(&Tok::Dots));
        let output = match rhs {
            Some(r) => {
                let out = term(r, equation)?;
                for (i, tok) in out.iter().enumerate() {
                    let Tok::Letter(l) = *tok else { continue };
                    if count[l] == 0 {
                        return Err(format!(
                            "equation {equation:?}: output label {:?} is in no input",
                            letter_name(l)
                        ));
                    }
                    if out[..i].contains(tok) {
                        return Err(format!(
                            "equation {equation:?}: output label {:?} appears twice",
                            letter_name(l)
                        ));
                    }
                }
                out
            }
            None => {
                let once = (0..LETTERS).filter(|&l| count[l] == 1).map(Tok::Letter);
                dots.then_some(Tok::Dots).into_iter().chain(once).collect()
            }
        };
        Ok(Einsum {
            equation: equation.to_string(),
            terms,
            output,
        })
    }

    /// The labels for operands of ranks `ranks`.
    fn spec(&self, ranks: &[usize]) -> Result<Spec, String> {
        if ranks.len() != self.terms.len() {
            return Err(format!(
                "equation {:?} has {} operand(s), and {} input(s) are given",
                self.equation,
                self.terms.len(),
                ranks.len()
            ));
        }
        let mut dots: Option<usize> = None;
        for (i, (t, &r)) in self.terms.iter().zip(ranks).enumerate() {
            let letters = t.iter().filter(|&&x| x != Tok::Dots).count();
            let fits = match t.contains(&Tok::Dots) {
                true => r >= letters,
                false => r == letters,
            };
            if !fits {
                return Err(format!(
                    "equation {:?}: input {i} has rank {r}, which term {} does not fit",
                    self.equation,
                    i + 1
                ));
            }
            if t.contains(&Tok::Dots) {
                let e = r - letters;
                if dots.is_some_and(|d| d != e) {
                    return Err(format!(
                        "equation {:?}: \"...\" stands for {} dimensions in one input and {e} \
                         in input {i}; it must stand for the same number in every input",
                        self.equation,
                        dots.unwrap_or_default()
                    ));
                }
                dots = Some(e);
            }
        }
        let e = dots.unwrap_or(0);
        if e > crate::format::MAX_RANK {
            return Err(format!(
                "equation {:?}: \"...\" stands for {e} dimensions, more than the {} a value may have",
                self.equation,
                crate::format::MAX_RANK
            ));
        }
        let expand = |t: &[Tok]| -> Vec<usize> {
            (t.iter())
                .flat_map(|tok| match *tok {
                    Tok::Letter(l) => l..l + 1,
                    Tok::Dots => LETTERS..LETTERS + e,
                })
                .collect()
        };
        Ok(Spec {
            ins: self.terms.iter().map(|t| expand(t)).collect(),
            out: expand(&self.output),
        })
    }

    /// The output type: F32 operands whose labels agree in size (the dimensions of `...`
    /// broadcast instead).
    pub(super) fn infer(&self, ins: &[&VType]) -> Result<VType, String> {
        for (i, t) in ins.iter().enumerate() {
            float(t, &format!("input {i}"))?;
        }
        let spec = self.spec(&ins.iter().map(|t| t.rank()).collect::<Vec<_>>())?;
        let mut size: Vec<Option<D>> = vec![None; LETTERS + crate::format::MAX_RANK];
        for (t, labels) in ins.iter().zip(&spec.ins) {
            for (d, &l) in t.shape.iter().zip(labels) {
                size[l] = Some(match &size[l] {
                    None => d.clone(),
                    Some(prev) if l < LETTERS => same(prev, d, || {
                        format!(
                            "equation {:?}: the sizes of label {:?} differ",
                            self.equation,
                            letter_name(l)
                        )
                    })?,
                    Some(prev) => {
                        let b =
                            shape::broadcast(std::slice::from_ref(prev), std::slice::from_ref(d));
                        b.map_err(|_| {
                            format!(
                                "equation {:?}: the dimensions of \"...\" do not broadcast ({prev} \
                                 against {d}; inputs {})",
                                self.equation,
                                (ins.iter().map(|t| fmt_shape(&t.shape)))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?
                        .remove(0)
                    }
                });
            }
        }
        let out = (spec.out.iter())
            .map(|&l| size[l].clone().expect("output labels are in the inputs"))
            .collect();
        Ok(VType::new(Elem::F32, out))
    }

    /// The einsum of `ins` (whose types inference accepted), into shape `out`.
    pub(super) fn run(&self, ins: &[&Tensor], out: &[usize]) -> Tensor {
        let ranks: Vec<usize> = ins.iter().map(|t| t.shape.len()).collect();
        let spec = self.spec(&ranks).expect("inference checked the equation");
        let mut ops: Vec<Operand<'_>> = (ins.iter().zip(&spec.ins))
            .map(|(t, labels)| Operand {
                data: Cow::Borrowed(&t.data),
                shape: t.shape.clone(),
                labels: labels.clone(),
            })
            .map(Operand::diagonal)
            .collect();
        if let [a, b] = &mut ops[..] {
            // A `...` dimension of size 1 against a larger one is broadcast: the operand
            // holding 1 no longer has it.
            for l in a.labels.clone() {
                match (a.size(l), b.size(l)) {
                    (Some(1), Some(n)) if n != 1 => a.drop_axis(l),
                    (Some(n), Some(1)) if n != 1 => b.drop_axis(l),
                    _ => {}
                }
            }
        }
        // Labels only one operand has, and the output lacks, are summed over first.
        let others: Vec<Vec<usize>> = (0..ops.len())
            .map(|i| {
                let mut keep = spec.out.clone();
                (ops.iter().enumerate())
                    .filter(|&(j, _)| j != i)
                    .for_each(|(_, o)| keep.extend(&o.labels));
                keep
            })
            .collect();
        let ops: Vec<Operand<'_>> = (ops.into_iter().zip(&others))
            .map(|(o, keep)| o.sum_except(keep))
            .collect();
        let data = match <[Operand; 2]>::try_from(ops) {
            Ok([a, b]) => product(a, b, &spec.out),
            Err(mut one) => one.remove(0).permuted(&spec.out).data.into_owned(),
        };
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// An operand on its way to the product: its elements (borrowed until an operation copies
/// them), shape, and the label of each axis.
struct Operand<'a> {
    data: Cow<'a, [f32]>,
    shape: Vec<usize>,
    labels: Vec<usize>,
}

impl<'a> Operand<'a> {
    fn size(&self, label: usize) -> Option<usize> {
        let i = self.labels.iter().position(|&l| l == label)?;
        Some(self.shape[i])
    }

    /// The operand without the axis of `label`, which has size 1.
    fn drop_axis(&mut self, label: usize) {
        if let Some(i) = self.labels.iter().position(|&l| l == label) {
            self.labels.remove(i);
            self.shape.remove(i);
        }
    }

    /// The diagonal over each label the operand repeats (`ii->i`): one axis per label.
    fn diagonal(self) -> Operand<'a> {
        let mut labels: Vec<usize> = Vec::new();
        for &l in &self.labels {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        if labels.len() == self.labels.len() {
            return self;
        }
        let st = strides(&self.shape);
        let mut shape = Vec::with_capacity(labels.len());
        let mut step = Vec::with_capacity(labels.len());
        for &l in &labels {
            let at = (0..self.labels.len()).filter(|&i| self.labels[i] == l);
            step.push(at.clone().map(|i| st[i] as isize).sum());
            shape.push(self.shape[at.min().expect("the label is there")]);
        }
        Operand {
            data: Cow::Owned(strided(&self.data, 0, &step, &shape)),
            shape,
            labels,
        }
    }

    /// The sums over every label not in `keep`.
    fn sum_except(self, keep: &[usize]) -> Operand<'a> {
        let reduced: Vec<bool> = self.labels.iter().map(|l| !keep.contains(l)).collect();
        if !reduced.contains(&true) {
            return self;
        }
        let data = sum_over(&self.data, &self.shape, &reduced);
        let kept = |v: &[usize]| -> Vec<usize> {
            (v.iter().zip(&reduced))
                .filter(|(_, &r)| !r)
                .map(|(&x, _)| x)
                .collect()
        };
        Operand {
            data: Cow::Owned(data),
            shape: kept(&self.shape),
            labels: kept(&self.labels),
        }
    }

    /// The operand with its axes in the order of `labels` (the same set), copied only if
    /// that order is not already its own.
    fn permuted(self, labels: &[usize]) -> Operand<'a> {
        if self.labels == labels {
            return self;
        }
        let st = strides(&self.shape);
        let from = |l: &usize| {
            (self.labels.iter())
                .position(|x| x == l)
                .expect("the same labels")
        };
        let step: Vec<isize> = labels.iter().map(|l| st[from(l)] as isize).collect();
        let shape: Vec<usize> = labels.iter().map(|l| self.shape[from(l)]).collect();
        Operand {
            data: Cow::Owned(strided(&self.data, 0, &step, &shape)),
            shape,
            labels: labels.to_vec(),
        }
    }
}

/// Multiply-adds below which the batches of a product run on one core.
const PAR_FLOPS: usize = 1 << 18;

/// The product of two operands each of whose labels the other or the output has, summed
/// over the labels the output lacks, in the output's order `out`.
fn product(a: Operand<'_>, b: Operand<'_>, out: &[usize]) -> Vec<f32> {
    let has = |o: &Operand, l: &usize| o.labels.contains(l);
    let batch: Vec<usize> = (out.iter())
        .filter(|l| has(&a, l) && has(&b, l))
        .copied()
        .collect();
    let only = |x: &Operand, y: &Operand| -> Vec<usize> {
        (out.iter())
            .filter(|l| has(x, l) && !has(y, l))
            .copied()
            .collect()
    };
    let (a_kept, b_kept) = (only(&a, &b), only(&b, &a));
    let summed: Vec<usize> = (a.labels.iter())
        .filter(|l| has(&b, l) && !out.contains(l))
        .copied()
        .collect();
    let dim = |l: usize| a.size(l).or(b.size(l)).expect("a label of an operand");
    let dims = |ls: &[usize]| -> usize { ls.iter().map(|&l| dim(l)).product() };
    let cat = |parts: &[&[usize]]| parts.concat();
    // C = A B gives [batch, A's kept, B's kept]; C = B A the other order: whichever is the
    // output's needs no final permutation.
    let swap = cat(&[&batch, &b_kept, &a_kept]) == out;
    let (x_kept, y_kept) = if swap {
        (b_kept, a_kept)
    } else {
        (a_kept, b_kept)
    };
    let (bt, m, k, n) = (dims(&batch), dims(&x_kept), dims(&summed), dims(&y_kept));
    let done = cat(&[&batch, &x_kept, &y_kept]);
    let done_shape: Vec<usize> = done.iter().map(|&l| dim(l)).collect();
    let (x, y) = if swap { (b, a) } else { (a, b) };
    // Each operand as the matrices of its batch: read as it lies (transposed or not) when it
    // can be, else copied into [batch, rows, cols].
    let (x, x_t) = layout(
        x,
        &cat(&[&batch, &x_kept, &summed]),
        &cat(&[&batch, &summed, &x_kept]),
    );
    let (y, y_t) = layout(
        y,
        &cat(&[&batch, &summed, &y_kept]),
        &cat(&[&batch, &y_kept, &summed]),
    );
    let mut c = vec![0f32; bt * m * n];
    if m * n == 1 && k == 1 {
        // Element by element (a Hadamard product).
        (c.iter_mut().zip(x.iter().zip(y.iter()))).for_each(|(c, (p, q))| *c = p * q);
    } else if bt == 1 && k > 1 && m * n > 1 {
        gemm(1.0, view(&x, m, k, x_t), view(&y, k, n, y_t), 0.0, &mut c);
    } else {
        let one = |i: usize, c: &mut [f32]| {
            let (xs, ys) = (
                &x[i * m * k..(i + 1) * m * k],
                &y[i * k * n..(i + 1) * k * n],
            );
            if k == 1 {
                // An outer product (both layouts are the same then).
                for (row, &p) in c.chunks_exact_mut(n).zip(xs) {
                    row.iter_mut().zip(ys).for_each(|(c, &q)| *c = p * q);
                }
            } else if m * n == 1 {
                c[0] = xs.iter().zip(ys).map(|(p, q)| p * q).sum();
            } else {
                sgemm_view(1.0, view(xs, m, k, x_t), view(ys, k, n, y_t), 0.0, c);
            }
        };
        let par = spread(bt.saturating_mul(m * n).saturating_mul(k), PAR_FLOPS);
        chunks(&mut c, m * n, par, one);
    }
    let c = Operand {
        data: Cow::Owned(c),
        shape: done_shape,
        labels: done,
    };
    c.permuted(out).data.into_owned()
}

/// A `rows x cols` matrix stored in `d` row-major, or transposed (as `cols x rows`) if `t`.
fn view(d: &[f32], rows: usize, cols: usize, t: bool) -> MatRef<'_> {
    match t {
        false => MatRef::new(d, rows, cols),
        true => MatRef {
            data: d,
            rows,
            cols,
            rs: 1,
            cs: rows,
        },
    }
}

/// `o`'s elements laid out as `normal` (`false`) or, failing that, as `transposed` (`true`),
/// copied into `normal` if they are neither.
fn layout<'a>(o: Operand<'a>, normal: &[usize], transposed: &[usize]) -> (Cow<'a, [f32]>, bool) {
    if o.labels == transposed && o.labels != normal {
        return (o.data, true);
    }
    (o.permuted(normal).data, false)
}

#[cfg(test)]
mod tests {
    use super::super::math_fixture as fixture;
    use super::*;
    use crate::model::{Attr, Node};

    fn parsed(equation: &str) -> Result<Einsum, String> {
        let node = Node {
            op: "Einsum".into(),
            name: "e".into(),
            inputs: vec!["a".into(), "b".into()],
            outputs: vec!["y".into()],
            attrs: [("equation".to_string(), Attr::Text(equation.into()))].into(),
        };
        let mut a = Attrs::new(&node);
        let e = Einsum::parse(&mut a)?;
        a.finish()?;
        Ok(e)
    }

    fn vt(s: &[u64]) -> VType {
        VType::new(Elem::F32, s.iter().map(|&d| D::Fixed(d)).collect())
    }

    #[test]
    fn einsum_matches_the_reference() {
        for c in fixture::cases(&["Einsum"], 33) {
            let Some(Attr::Text(eq)) = c.attrs.get("equation") else {
                panic!("{}: no equation", c.name)
            };
            let e = parsed(eq).unwrap();
            let types: Vec<VType> = (0..c.inputs.len()).map(|i| c.vtype(i)).collect();
            let t = e.infer(&types.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(t.shape, c.out_shape(0), "{}", c.name);
            let ins: Vec<&Tensor> = (0..c.inputs.len()).map(|i| c.f32(i)).collect();
            c.check_f32(&e.run(&ins, c.outputs[0].shape()), 0);
        }
    }

    /// Einsum by definition: every assignment of the labels, one multiply-add each.
    fn naive(e: &Einsum, ins: &[&Tensor], out: &[usize]) -> Vec<f32> {
        let spec = e
            .spec(&ins.iter().map(|t| t.shape.len()).collect::<Vec<_>>())
            .unwrap();
        let mut size = vec![1usize; LETTERS + 16];
        for (t, ls) in ins.iter().zip(&spec.ins) {
            for (&d, &l) in t.shape.iter().zip(ls) {
                size[l] = size[l].max(d);
            }
        }
        let mut all: Vec<usize> = spec.ins.concat();
        all.sort();
        all.dedup();
        let mut y = vec![0f32; out.iter().product()];
        let total: usize = all.iter().map(|&l| size[l]).product();
        let mut at = vec![0usize; LETTERS + 16];
        for mut i in 0..total {
            for &l in all.iter().rev() {
                at[l] = i % size[l];
                i /= size[l];
            }
            let index = |ls: &[usize], shape: &[usize]| {
                (ls.iter().zip(shape))
                    .fold(0, |acc, (&l, &d)| acc * d + if d == 1 { 0 } else { at[l] })
            };
            let p: f32 = (ins.iter().zip(&spec.ins))
                .map(|(t, ls)| t.data[index(ls, &t.shape)])
                .product();
            y[index(&spec.out, out)] += p;
        }
        y
    }

    #[test]
    fn large_and_permuted_products_agree_with_the_definition() {
        let cases: &[(&str, &[&[usize]])] = &[
            ("ij,jk->ik", &[&[70, 90], &[90, 60]]),
            ("bij,bjk->bik", &[&[5, 30, 40], &[5, 40, 20]]),
            ("bhqd,bhkd->bhqk", &[&[2, 3, 20, 16], &[2, 3, 24, 16]]),
            ("bhqk,bhkd->bqhd", &[&[2, 3, 20, 24], &[2, 3, 24, 16]]),
            ("ibj,jbk->bik", &[&[6, 3, 9], &[9, 3, 7]]),
            ("ij,kj->ki", &[&[12, 9], &[8, 9]]),
            ("abc,cd->dba", &[&[3, 4, 5], &[5, 6]]),
            ("b...i,b...i->b...", &[&[4, 2, 3, 50], &[4, 1, 3, 50]]),
            ("aij,aij->a", &[&[40, 30, 30], &[40, 30, 30]]),
            ("ij,ij->ij", &[&[300, 200], &[300, 200]]),
            ("iij->j", &[&[5, 5, 7]]),
            ("ab,cd->", &[&[3, 4], &[5, 6]]),
        ];
        for (eq, shapes) in cases {
            let e = Einsum::new(eq).unwrap();
            let ins: Vec<Tensor> = (shapes.iter().enumerate())
                .map(|(j, s)| {
                    let n: usize = s.iter().product();
                    Tensor {
                        shape: s.to_vec(),
                        data: (0..n)
                            .map(|i| ((i * 7 + j * 3) % 11) as f32 - 5.0)
                            .collect(),
                    }
                })
                .collect();
            let types: Vec<VType> = shapes
                .iter()
                .map(|s| vt(&s.iter().map(|&d| d as u64).collect::<Vec<_>>()))
                .collect();
            let out = shape::concrete(&e.infer(&types.iter().collect::<Vec<_>>()).unwrap().shape)
                .unwrap();
            let refs: Vec<&Tensor> = ins.iter().collect();
            let got = e.run(&refs, &out);
            let want = naive(&e, &refs, &out);
            assert_eq!(got.data.len(), want.len(), "{eq}");
            for (g, w) in got.data.iter().zip(&want) {
                // Small integers: every sum is exact.
                assert_eq!(g, w, "{eq}");
            }
        }
    }

    #[test]
    fn equations_are_checked() {
        let err = |eq: &str| parsed(eq).unwrap_err();
        assert_eq!(
            err("ij,jk,kl->il"),
            "equation \"ij,jk,kl->il\" has 3 operands; nnsign's Einsum takes 1 or 2"
        );
        assert_eq!(
            err("i1->i"),
            "equation \"i1->i\": '1' is not a label (letters, and \"...\")"
        );
        assert_eq!(
            err("ij->k"),
            "equation \"ij->k\": output label 'k' is in no input"
        );
        assert_eq!(
            err("ij->ii"),
            "equation \"ij->ii\": output label 'i' appears twice"
        );
        assert_eq!(
            err("...i...->i"),
            "equation \"...i...->i\": term \"...i...\" has \"...\" twice"
        );
        assert_eq!(
            err("i..j->ij"),
            "equation \"i..j->ij\": '.' is not a label (letters, and \"...\")"
        );
        let node = Node {
            op: "Einsum".into(),
            name: "e".into(),
            inputs: vec!["a".into()],
            outputs: vec!["y".into()],
            attrs: Default::default(),
        };
        assert_eq!(
            Einsum::parse(&mut Attrs::new(&node)).unwrap_err(),
            "attribute \"equation\" is required"
        );
    }

    #[test]
    fn operands_must_fit_the_equation() {
        let e = Einsum::new("ij,jk->ik").unwrap();
        let (a, b) = (vt(&[2, 3]), vt(&[4, 5]));
        assert_eq!(
            e.infer(&[&a, &b]).unwrap_err(),
            "equation \"ij,jk->ik\": the sizes of label 'j' differ: 3 != 4"
        );
        assert_eq!(
            e.infer(&[&a]).unwrap_err(),
            "equation \"ij,jk->ik\" has 2 operand(s), and 1 input(s) are given"
        );
        assert_eq!(
            e.infer(&[&vt(&[2, 3, 4]), &b]).unwrap_err(),
            "equation \"ij,jk->ik\": input 0 has rank 3, which term 1 does not fit"
        );
        let e = Einsum::new("...ij,...jk->...ik").unwrap();
        assert_eq!(
            e.infer(&[&vt(&[2, 1, 3, 4]), &vt(&[3, 4, 5])]).unwrap_err(),
            "equation \"...ij,...jk->...ik\": \"...\" stands for 2 dimensions in one input and 1 in input 1; it must stand for the same number in every input"
        );
        assert_eq!(
            e.infer(&[&vt(&[2, 3, 4]), &vt(&[3, 4, 5])]).unwrap_err(),
            "equation \"...ij,...jk->...ik\": the dimensions of \"...\" do not broadcast (2 against 3; inputs [2, 3, 4], [3, 4, 5])"
        );
        let i = VType::new(Elem::I64, vec![D::Fixed(2)]);
        assert_eq!(
            Einsum::new("i->").unwrap().infer(&[&i]).unwrap_err(),
            "input 0 must be F32, not I64"
        );
        // Symbols: a batch symbol carries through, and meets its size at run time.
        let e = Einsum::new("bij,jk->bik").unwrap();
        let x = VType::new(
            Elem::F32,
            vec![D::Sym("b".into()), D::Fixed(3), D::Sym("n".into())],
        );
        let t = e.infer(&[&x, &vt(&[4, 5])]).unwrap();
        assert_eq!(t.shape, vec![D::Sym("b".into()), D::Fixed(3), D::Fixed(5)]);
    }
}
