//! A value passed through as it is when the type asked for is its own type: a method that
//! takes its arguments as a `Dict` or `Value`, a method that returns a `Value`, a caller that
//! wants the result as a `Value`. Decoding a map into a map of the same values through serde
//! copies every key and rebuilds every map for nothing.

/// `t` as a `U`, when `T` is `U`; `t` back otherwise.
pub(crate) fn same_type<T: 'static, U: 'static>(t: T) -> Result<U, T> {
    let mut slot = Some(t);
    let taken = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take);
    match (taken, slot) {
        (Some(u), _) => Ok(u),
        (None, Some(t)) => Err(t),
        // The downcast succeeded only if the types are one, and then it took the value.
        (None, None) => unreachable!("a value taken without a downcast"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_the_type_asked_for_passes_and_any_other_comes_back() {
        assert_eq!(same_type::<i64, String>(7), Err(7));
        assert_eq!(same_type::<i64, i64>(7), Ok(7));
    }
}
