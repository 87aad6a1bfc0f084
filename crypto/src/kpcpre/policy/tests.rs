use super::*;

fn canon(s: &str) -> String {
    Policy::parse(s).unwrap().canonical().to_owned()
}

#[test]
fn precedence_chains_and_canonical_text() {
    assert_eq!(
        canon("sync AND (location OR node-2)"),
        "and(sync,or(location,node-2))"
    );
    assert_eq!(canon("a and b OR c"), "or(and(a,b),c)");
    assert_eq!(canon("a AND b AND c"), "and(a,b,c)");
    assert_eq!(canon("(a AND b) AND (c AND d)"), "and(and(a,b),and(c,d))");
    assert_eq!(canon("2 of (a, b, c)"), "2of3(a,b,c)");
    assert_eq!(canon("2 OF (a, b)"), "and(a,b)");
    assert_eq!(canon("sync"), "sync");
    for text in [
        "and(sync,or(location,node-2))",
        "2of3(a,b,and(c,d))",
        "or(a,3of4(b,c,d,e))",
    ] {
        assert_eq!(canon(text), text, "canonical text re-parses to itself");
    }
}

#[test]
fn errors_point_at_the_column() {
    let col = |s: &str| match Policy::parse(s) {
        Err(Error::PolicySyntax { column, .. }) => column,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(col("a AND"), 6);
    assert_eq!(col("a AND (b OR c"), 14);
    assert_eq!(col("a # b"), 3);
    assert_eq!(col("a b"), 3);
    assert_eq!(col("sync AND Loc"), 10);
    assert_eq!(col("2 of (a, b"), 11);
    assert_eq!(col("3 of (a, b)"), 1);
    assert_eq!(col("2of3(a,b)"), 1);
    assert_eq!(col("(a OR b))"), 9);
}

#[test]
fn limits() {
    let wide = format!(
        "or({})",
        (0..17)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(matches!(Policy::parse(&wide), Err(Error::PolicyLimit(_))));
    let mut deep = "a".to_string();
    for i in 0..9 {
        deep = format!("and({deep},b{i})");
    }
    assert!(matches!(Policy::parse(&deep), Err(Error::PolicyLimit(_))));
    let leaves: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
    let many = format!(
        "and({})",
        leaves
            .chunks(13)
            .map(|c| format!("or({})", c.join(",")))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(matches!(Policy::parse(&many), Err(Error::PolicyLimit(_))));
}

/// Issue 16: `(`×15,000 `sync` `)`×15,000 (30 KB) overflowed the stack of any thread; now it is a
/// typed refusal, as is nesting past the bound in a text short enough to pass the length check.
#[test]
fn hostile_nesting_is_refused_while_parsing() {
    let bomb = format!("{}sync{}", "(".repeat(15_000), ")".repeat(15_000));
    assert!(matches!(Policy::parse(&bomb), Err(Error::PolicyLimit(_))));
    let nested = |n: usize| format!("{}sync{}", "(".repeat(n), ")".repeat(n));
    assert!(matches!(
        Policy::parse(&nested(MAX_NESTING + 1)),
        Err(Error::PolicyLimit(_))
    ));
    assert_eq!(canon(&nested(MAX_NESTING)), "sync");
    let gates = format!(
        "{}sync{}",
        "and(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert!(matches!(Policy::parse(&gates), Err(Error::PolicyLimit(_))));
    let long = format!("a AND {}", "b".repeat(MAX_POLICY_TEXT));
    assert!(matches!(Policy::parse(&long), Err(Error::PolicyLimit(_))));
}

#[test]
fn minimal_set_prefers_small_children_and_keeps_indices() {
    let p = Policy::parse("or(and(a,b,c),d)").unwrap();
    let attrs = AttributeSet::new(["a", "b", "c", "d"]).unwrap();
    let m = p.minimal_satisfying_set(&attrs).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].leaf, 3);
    assert_eq!(m[0].delta, Scalar::one());

    // 2-of-3 with children 1 and 3 satisfied: λ1 = 3/2, λ3 = -1/2.
    let p = Policy::parse("2of3(a,b,c)").unwrap();
    let attrs = AttributeSet::new(["a", "c"]).unwrap();
    let m = p.minimal_satisfying_set(&attrs).unwrap();
    let two_inv = Scalar::from_u64(2).inverse().unwrap();
    assert_eq!(m[0].delta, &Scalar::from_u64(3) * &two_inv);
    assert_eq!(m[1].delta, -&two_inv);
    assert!(p
        .minimal_satisfying_set(&AttributeSet::new(["a"]).unwrap())
        .is_none());
    assert!(!p.is_satisfied(&AttributeSet::new(["b"]).unwrap()));
}

#[test]
fn sharing_interpolates_back_to_the_secret() {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let p = Policy::parse("or(2of3(a,b,and(c,d)),e)").unwrap();
    let secret = Scalar::random_nonzero(&mut rng);
    let shares = p.share(&secret, &mut rng);
    for attrs in [
        vec!["a", "c", "d"],
        vec!["a", "b"],
        vec!["e"],
        vec!["b", "c", "d"],
    ] {
        let set = AttributeSet::new(attrs).unwrap();
        let m = p.minimal_satisfying_set(&set).unwrap();
        let mut acc = Scalar::zero();
        for lf in &m {
            acc = &acc + &(&shares[lf.leaf] * &lf.delta);
        }
        assert_eq!(acc, secret);
    }
}
