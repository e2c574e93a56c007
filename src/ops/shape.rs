//! Shapes during inference: dimensions that are known, named by a symbol bound at run time, or
//! derived from symbols and known only at run time; and the rules shared by the ops.
//!
//! The same inference runs twice: at validation over symbolic shapes, where it refuses what is
//! wrong for every binding of the symbols, and at run time over the bound sizes, where every
//! dimension is known and every check is exact.

use crate::memory::MAX_ELEMENTS;
use crate::model::Dim;
use crate::tensor::Elem;

/// One dimension during inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum D {
    Fixed(u64),
    Sym(String),
    /// Derived from symbols (for example `batch * 16`): known only at run time.
    Any,
}

impl D {
    pub fn from_dim(d: &Dim) -> D {
        match d {
            Dim::Fixed(n) => D::Fixed(*n),
            Dim::Symbol(s) => D::Sym(s.clone()),
        }
    }

    pub fn fixed(&self) -> Option<u64> {
        match self {
            D::Fixed(n) => Some(*n),
            _ => None,
        }
    }
}

impl std::fmt::Display for D {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            D::Fixed(n) => write!(f, "{n}"),
            D::Sym(s) => f.write_str(s),
            D::Any => f.write_str("?"),
        }
    }
}

/// Most elements of a value whose content inference follows ([`VType::known`]).
pub const MAX_KNOWN: usize = 1024;

/// One integer of a value known before the model runs: a number, the size a symbol is bound
/// to, or derived from symbols (known only at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum K {
    Int(i64),
    Sym(String),
    Any,
}

impl K {
    pub fn from_dim(d: &D) -> K {
        match d {
            D::Fixed(n) => i64::try_from(*n).map_or(K::Any, K::Int),
            D::Sym(s) => K::Sym(s.clone()),
            D::Any => K::Any,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            K::Int(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for K {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            K::Int(v) => write!(f, "{v}"),
            K::Sym(s) => f.write_str(s),
            K::Any => f.write_str("?"),
        }
    }
}

/// The inferred type of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VType {
    pub elem: Elem,
    pub shape: Vec<D>,
    /// The content of a small I64 or BOOL value (row-major; BOOL as 0 and 1), when it follows
    /// from constants and shapes alone: what shape-computing subgraphs (`Shape`, `Gather`,
    /// `Concat`, ...) make, evaluated before the model runs so that the shapes they feed
    /// (`Reshape`, `Expand`, ...) are known to the memory plan.
    pub known: Option<Vec<K>>,
}

impl VType {
    pub fn new(elem: Elem, shape: Vec<D>) -> VType {
        VType {
            elem,
            shape,
            known: None,
        }
    }

    /// The same type with content `known`, kept only for a small integer or boolean value
    /// whose element count it matches.
    pub fn with_known(mut self, known: Option<Vec<K>>) -> VType {
        let fits = |k: &Vec<K>| {
            self.elem != Elem::F32
                && k.len() <= MAX_KNOWN
                && count(&self.shape).is_some_and(|c| c.syms.is_empty() && c.coef == k.len() as u64)
        };
        self.known = known.filter(fits);
        self
    }

    /// The content, when known and every element is a number.
    pub fn known_ints(&self) -> Option<Vec<i64>> {
        self.known.as_ref()?.iter().map(K::int).collect()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Bytes of the value with every symbol and derived dimension at 1 (saturating).
    pub fn bytes_at_one(&self) -> u64 {
        (self.shape.iter())
            .map(|d| d.fixed().unwrap_or(1))
            .fold(self.elem.size(), u64::saturating_mul)
    }
}

pub fn fmt_shape(s: &[D]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Two dimensions that must be equal: an error when both are known and differ; otherwise the
/// better known of the two (a symbol or derived dimension is checked again at run time).
pub fn same(a: &D, b: &D, what: impl FnOnce() -> String) -> Result<D, String> {
    match (a, b) {
        (D::Fixed(x), D::Fixed(y)) if x != y => Err(format!("{}: {x} != {y}", what())),
        (D::Fixed(_), _) => Ok(a.clone()),
        (_, D::Fixed(_)) => Ok(b.clone()),
        (D::Sym(_), _) => Ok(a.clone()),
        _ => Ok(b.clone()),
    }
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[D], b: &[D]) -> Result<Vec<D>, String> {
    let rank = a.len().max(b.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let x = (i + a.len()).checked_sub(rank).map(|j| &a[j]);
        let y = (i + b.len()).checked_sub(rank).map(|j| &b[j]);
        out.push(match (x, y) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => match (x, y) {
                (D::Fixed(1), y) => y.clone(),
                (x, D::Fixed(1)) => x.clone(),
                (D::Fixed(p), D::Fixed(q)) if p != q => {
                    return Err(format!(
                        "shapes {} and {} do not broadcast (dimension {p} against {q})",
                        fmt_shape(a),
                        fmt_shape(b)
                    ))
                }
                (x, y) if x == y => x.clone(),
                (D::Fixed(_), _) => x.clone(),
                (_, D::Fixed(_)) => y.clone(),
                _ => D::Any,
            },
            (None, None) => unreachable!("i < rank"),
        });
    }
    Ok(out)
}

/// An axis in `0..rank` from one that may count from the end.
pub fn axis(a: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!(
            "{what} {a} is out of range for rank {rank} (allowed {}..={})",
            -r,
            r - 1
        ))
    }
}

/// The element count of a shape as `coef * product(symbols)`, or unknown when it has a
/// derived dimension or overflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub coef: u64,
    pub syms: Vec<String>,
}

pub fn count(shape: &[D]) -> Option<Count> {
    let mut c = Count {
        coef: 1,
        syms: Vec::new(),
    };
    for d in shape {
        match d {
            D::Fixed(n) => c.coef = c.coef.checked_mul(*n)?,
            D::Sym(s) => c.syms.push(s.clone()),
            D::Any => return None,
        }
    }
    c.syms.sort();
    Some(c)
}

/// The dimension that makes `known` hold as many elements as `total`, if it can be known
/// before run time; `Err` when it provably cannot.
pub fn quotient(total: &[D], known: &[D]) -> Result<D, String> {
    let (Some(t), Some(k)) = (count(total), count(known)) else {
        return Ok(D::Any);
    };
    let mut rest = t.syms.clone();
    for s in &k.syms {
        match rest.iter().position(|r| r == s) {
            Some(i) => {
                rest.remove(i);
            }
            None => return Ok(D::Any),
        }
    }
    if k.coef == 0 || t.coef % k.coef != 0 {
        if rest.is_empty() && k.syms.is_empty() {
            return Err(format!(
                "{} elements do not divide into {}",
                fmt_count(&t),
                fmt_shape(known)
            ));
        }
        return Ok(D::Any);
    }
    let coef = t.coef / k.coef;
    Ok(match (coef, rest.as_slice()) {
        (c, []) => D::Fixed(c),
        (1, [s]) => D::Sym(s.clone()),
        _ => D::Any,
    })
}

fn fmt_count(c: &Count) -> String {
    let mut parts = vec![c.coef.to_string()];
    parts.extend(c.syms.iter().cloned());
    parts.join(" * ")
}

/// Whether two shapes surely hold different element counts.
pub fn counts_differ(a: &[D], b: &[D]) -> bool {
    matches!((count(a), count(b)), (Some(x), Some(y)) if x != y)
}

/// Converts a concrete inferred shape to sizes, refusing one too large to hold.
pub fn concrete(shape: &[D]) -> Result<Vec<usize>, String> {
    let mut total: u64 = 1;
    let mut out = Vec::with_capacity(shape.len());
    for d in shape {
        let n = d
            .fixed()
            .ok_or_else(|| format!("dimension {d} is not known at run time"))?;
        total = total.saturating_mul(n);
        out.push(n as usize);
    }
    if total > MAX_ELEMENTS {
        return Err(format!(
            "a value of shape {} would have {total} elements, more than nnsign can hold",
            fmt_shape(shape)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> D {
        D::Sym(x.into())
    }

    #[test]
    fn broadcasting_follows_numpy_and_defers_symbols() {
        let f = D::Fixed;
        assert_eq!(
            broadcast(&[f(2), f(1), f(4)], &[f(3), f(1)]).unwrap(),
            vec![f(2), f(3), f(4)]
        );
        assert!(broadcast(&[f(2), f(3)], &[f(4)]).is_err());
        assert_eq!(
            broadcast(&[s("b"), f(4)], &[f(4)]).unwrap(),
            vec![s("b"), f(4)]
        );
        assert_eq!(broadcast(&[s("b")], &[f(3)]).unwrap(), vec![f(3)]);
        assert_eq!(broadcast(&[s("b")], &[s("c")]).unwrap(), vec![D::Any]);
    }

    #[test]
    fn quotients_of_symbolic_counts() {
        let f = D::Fixed;
        assert_eq!(quotient(&[s("b"), f(4), f(4)], &[s("b")]).unwrap(), f(16));
        assert_eq!(quotient(&[s("b"), f(4), f(4)], &[f(16)]).unwrap(), s("b"));
        assert_eq!(quotient(&[s("b"), f(4)], &[f(8)]).unwrap(), D::Any);
        assert!(quotient(&[f(3), f(4)], &[f(5)]).is_err());
        assert_eq!(quotient(&[f(3), f(4)], &[f(6)]).unwrap(), f(2));
    }

    #[test]
    fn axes_count_from_the_end() {
        assert_eq!(axis(-1, 3, "axis"), Ok(2));
        assert_eq!(axis(0, 3, "axis"), Ok(0));
        assert!(axis(3, 3, "axis").is_err());
        assert!(axis(-4, 3, "axis").is_err());
    }
}
