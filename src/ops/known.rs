//! Values known before the model runs: the content of small integer and boolean values that
//! follows from constants and shapes alone ([`VType::known`]).
//!
//! Exporters compute shapes inside the graph: `torch.onnx.export` of `x.view(x.size(0), -1)`
//! writes `Shape → Gather → Unsqueeze → Concat → Reshape`. Inference follows such values
//! through the ops below, with a dimension's symbol standing for its size, so that the shapes
//! they feed are known when the graph is validated and again, exactly, when the symbols are
//! bound: the memory plan sees every shape before anything runs. An op whose shape depends on
//! a value computed from data is refused.

use super::shape::{VType, D, K, MAX_KNOWN};
use crate::tensor::Elem;

/// The content of a parameter given as an input (op-set 3), which must be known before the
/// model runs; `None` when the input is omitted.
pub(super) fn param(t: Option<&VType>, what: &str) -> Result<Option<Vec<K>>, String> {
    let Some(t) = t else { return Ok(None) };
    if t.elem != Elem::I64 {
        return Err(format!("{what} must be I64, not {}", t.elem.name()));
    }
    if t.rank() > 1 {
        return Err(format!(
            "{what} must be a list (rank 1), not of rank {}",
            t.rank()
        ));
    }
    match &t.known {
        Some(k) => Ok(Some(k.clone())),
        None => Err(format!(
            "{what} is computed from data at run time; nnsign needs it to follow from constants \
             and shapes, so that every shape is known before the model runs"
        )),
    }
}

/// [`param`] whose every element must be a number (axes, steps, repeats): a symbol there
/// would leave even the output's rank or layout unknown.
pub(super) fn param_ints(t: Option<&VType>, what: &str) -> Result<Option<Vec<i64>>, String> {
    let Some(k) = param(t, what)? else {
        return Ok(None);
    };
    k.iter()
        .map(|k| {
            k.int().ok_or_else(|| {
                format!("{what} holds {k}, a size known only at run time; it must be a number")
            })
        })
        .collect::<Result<Vec<i64>, String>>()
        .map(Some)
}

/// The content of an I64 constant, when small enough to follow.
pub(super) fn of_ints(v: &[i64]) -> Option<Vec<K>> {
    (v.len() <= MAX_KNOWN).then(|| v.iter().map(|&x| K::Int(x)).collect())
}

/// `Shape`'s content: dimensions `start..end` of `x`.
pub(super) fn dims(shape: &[D]) -> Vec<K> {
    shape.iter().map(K::from_dim).collect()
}

/// `Gather` along axis 0 of a known list, with known indices.
pub(super) fn gather(data: &VType, indices: &VType) -> Option<Vec<K>> {
    let (src, idx) = (data.known.as_ref()?, indices.known_ints()?);
    if data.rank() != 1 {
        return None;
    }
    let n = src.len() as i64;
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            (0..n).contains(&j).then(|| src[j as usize].clone())
        })
        .collect()
}

/// `Concat` of known lists.
pub(super) fn concat(ins: &[&VType]) -> Option<Vec<K>> {
    let mut out = Vec::new();
    for t in ins {
        if t.rank() != 1 {
            return None;
        }
        out.extend(t.known.as_ref()?.iter().cloned());
    }
    (out.len() <= MAX_KNOWN).then_some(out)
}

/// Elements `first, first + step, ...` (`count` of them) of a known list.
pub(super) fn slice(x: &VType, first: i64, step: i64, count: u64) -> Option<Vec<K>> {
    let src = x.known.as_ref()?;
    (0..count)
        .map(|i| {
            let j = first.checked_add(step.checked_mul(i as i64)?)?;
            src.get(usize::try_from(j).ok()?).cloned()
        })
        .collect()
}

/// Integer arithmetic of `Add`, `Sub`, `Mul`, `Div` over known values of equal length or a
/// single element, with symbols kept where the result is the symbol itself.
pub(super) fn arithmetic(op: &str, a: &VType, b: &VType) -> Option<Vec<K>> {
    let (x, y) = (a.known.as_ref()?, b.known.as_ref()?);
    let n = x.len().max(y.len());
    if (x.len() != n && x.len() != 1) || (y.len() != n && y.len() != 1) {
        return None;
    }
    let at = |v: &[K], i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
    Some(
        (0..n)
            .map(|i| match (op, at(x, i), at(y, i)) {
                (_, K::Int(p), K::Int(q)) => match op {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    // ONNX integer division truncates; by zero the kernel refuses at run time.
                    "Div" => p.checked_div(q),
                    // C's remainder (the sign of the dividend), or Python's (of the divisor).
                    "FMod" => p.checked_rem(q),
                    "Mod" => p.checked_rem(q).map(|r| {
                        if r != 0 && (r < 0) != (q < 0) {
                            r + q
                        } else {
                            r
                        }
                    }),
                    _ => None,
                }
                .map_or(K::Any, K::Int),
                ("Add" | "Sub", s @ K::Sym(_), K::Int(0))
                | ("Mul" | "Div", s @ K::Sym(_), K::Int(1))
                | ("Add", K::Int(0), s @ K::Sym(_))
                | ("Mul", K::Int(1), s @ K::Sym(_)) => s,
                _ => K::Any,
            })
            .collect(),
    )
}

/// `Equal` over known values: a size (a symbol) is never negative, so it differs from every
/// negative number, which is how exporters test for a `-1` in a shape.
pub(super) fn equal(a: &VType, b: &VType) -> Option<Vec<K>> {
    let (x, y) = (a.known.as_ref()?, b.known.as_ref()?);
    let n = x.len().max(y.len());
    if (x.len() != n && x.len() != 1) || (y.len() != n && y.len() != 1) {
        return None;
    }
    let at = |v: &[K], i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
    (0..n)
        .map(|i| match (at(x, i), at(y, i)) {
            (K::Int(p), K::Int(q)) => Some(K::Int((p == q) as i64)),
            (K::Sym(s), K::Sym(t)) if s == t => Some(K::Int(1)),
            (K::Sym(_) | K::Any, K::Int(q)) | (K::Int(q), K::Sym(_) | K::Any) if q < 0 => {
                Some(K::Int(0))
            }
            _ => None,
        })
        .collect()
}

/// `Where` over known values of equal length or a single element.
pub(super) fn select(c: &VType, a: &VType, b: &VType) -> Option<Vec<K>> {
    let (c, x, y) = (c.known_ints()?, a.known.as_ref()?, b.known.as_ref()?);
    let n = c.len().max(x.len()).max(y.len());
    let ok = |len: usize| len == n || len == 1;
    if !(ok(c.len()) && ok(x.len()) && ok(y.len())) {
        return None;
    }
    let at = |len: usize, i: usize| if len == 1 { 0 } else { i };
    Some(
        (0..n)
            .map(|i| match c[at(c.len(), i)] {
                0 => y[at(y.len(), i)].clone(),
                _ => x[at(x.len(), i)].clone(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(k: Vec<K>) -> VType {
        VType::new(Elem::I64, vec![D::Fixed(k.len() as u64)]).with_known(Some(k))
    }

    fn s(x: &str) -> K {
        K::Sym(x.into())
    }

    #[test]
    fn a_flattening_shape_follows_the_batch_symbol() {
        // Shape(x) of [batch, 16, 4, 4], Gather 0, Concat with -1: [batch, -1].
        let shape = list(dims(&[
            D::Sym("batch".into()),
            D::Fixed(16),
            D::Fixed(4),
            D::Fixed(4),
        ]));
        let zero = VType::new(Elem::I64, vec![]).with_known(Some(vec![K::Int(0)]));
        let batch = gather(&shape, &zero).unwrap();
        assert_eq!(batch, vec![s("batch")]);
        let target = concat(&[&list(batch), &list(vec![K::Int(-1)])]).unwrap();
        assert_eq!(target, vec![s("batch"), K::Int(-1)]);
    }

    #[test]
    fn arithmetic_keeps_symbols_only_where_exact() {
        let a = list(vec![s("b"), K::Int(6)]);
        let one = list(vec![K::Int(1)]);
        let two = list(vec![K::Int(2)]);
        assert_eq!(
            arithmetic("Mul", &a, &one).unwrap(),
            vec![s("b"), K::Int(6)]
        );
        assert_eq!(
            arithmetic("Div", &a, &two).unwrap(),
            vec![K::Any, K::Int(3)]
        );
        assert_eq!(
            arithmetic("Div", &list(vec![K::Int(7)]), &list(vec![K::Int(0)])).unwrap(),
            vec![K::Any]
        );
        assert_eq!(
            arithmetic("Add", &list(vec![K::Int(i64::MAX)]), &one).unwrap(),
            vec![K::Any]
        );
        assert!(arithmetic("Add", &a, &list(vec![K::Int(1); 3])).is_none());
    }

    #[test]
    fn a_size_never_equals_a_negative_number() {
        let shape = list(vec![s("b"), K::Int(-1), K::Int(3)]);
        let minus = list(vec![K::Int(-1)]);
        assert_eq!(
            equal(&shape, &minus).unwrap(),
            vec![K::Int(0), K::Int(1), K::Int(0)]
        );
        assert!(equal(&list(vec![s("b")]), &list(vec![K::Int(3)])).is_none());
    }

    #[test]
    fn parameters_must_be_known_lists() {
        let data = VType::new(Elem::I64, vec![D::Fixed(2)]);
        let err = param(Some(&data), "input \"shape\"").unwrap_err();
        assert!(err.contains("computed from data at run time"), "{err}");
        let sym = list(vec![s("b")]);
        let err = param_ints(Some(&sym), "input \"axes\"").unwrap_err();
        assert_eq!(
            err,
            "input \"axes\" holds b, a size known only at run time; it must be a number"
        );
        let f = VType::new(Elem::F32, vec![D::Fixed(1)]);
        assert_eq!(
            param(Some(&f), "input \"shape\"").unwrap_err(),
            "input \"shape\" must be I64, not F32"
        );
        assert_eq!(param(None, "x").unwrap(), None);
    }
}
