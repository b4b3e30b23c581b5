use super::*;
use serde::{Deserialize, Serialize};

mod v1 {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: u16,
        pub value: f32,
    }
    crate::message!(Reading, "sensor.reading", 1, 0);
}

mod v1_minor {
    use serde::{Deserialize, Serialize};
    /// Same shape as v1, a minor bump.
    #[derive(Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: u16,
        pub value: f32,
    }
    crate::message!(Reading, "sensor.reading", 1, 3);
}

mod added {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: u16,
        pub value: f32,
        pub unit: u8,
    }
    crate::message!(Reading, "sensor.reading", 1, 1);
}

mod renamed {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: u16,
        pub celsius: f32,
    }
    crate::message!(Reading, "sensor.reading", 1, 0);
}

mod retyped {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: u32,
        pub value: f32,
    }
    crate::message!(Reading, "sensor.reading", 1, 0);
}

mod nested_a {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub enum Unit {
        Celsius,
        Kelvin,
    }
    #[derive(Serialize, Deserialize)]
    pub enum Event {
        Reading { unit: Unit, value: f64 },
        Tree(Vec<Event>),
        Gone,
    }
    crate::message!(Event, "sensor.event", 1, 0);
}

mod nested_b {
    use serde::{Deserialize, Serialize};
    /// One more variant in an enum nested two levels deep.
    #[derive(Serialize, Deserialize)]
    pub enum Unit {
        Celsius,
        Kelvin,
        Fahrenheit,
    }
    #[derive(Serialize, Deserialize)]
    pub enum Event {
        Reading { unit: Unit, value: f64 },
        Tree(Vec<Event>),
        Gone,
    }
    crate::message!(Event, "sensor.event", 1, 0);
}

/// Rejects the zero the tracer feeds it.
#[derive(Serialize, Deserialize)]
#[serde(try_from = "u32")]
struct NonZero(u32);

impl TryFrom<u32> for NonZero {
    type Error = &'static str;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        if v == 0 {
            Err("zero")
        } else {
            Ok(Self(v))
        }
    }
}
crate::message!(NonZero, "test.nonzero", 1, 0);

fn fp<T: Message>() -> u64 {
    T::fingerprint().expect("traceable")
}

#[test]
fn version_displays_major_dot_minor() {
    assert_eq!(Version::new(1, 2).to_string(), "1.2");
}

#[test]
fn fingerprint_follows_shape_only() {
    let base = fp::<v1::Reading>();
    assert_eq!(base, fp::<v1::Reading>(), "deterministic (and cached)");
    assert_eq!(base, fp::<v1_minor::Reading>(), "same shape, same fingerprint");
    assert_ne!(base, fp::<added::Reading>(), "field added");
    assert_ne!(base, fp::<renamed::Reading>(), "field renamed");
    assert_ne!(base, fp::<retyped::Reading>(), "field retyped");
}

#[test]
fn fingerprint_sees_variants_of_nested_enums() {
    assert_ne!(fp::<nested_a::Event>(), fp::<nested_b::Event>());
}

#[test]
fn builtin_fingerprints_are_structural() {
    assert_eq!(fingerprint::structural::<Vec<u8>>().unwrap(), BYTES_FINGERPRINT);
    assert_eq!(fingerprint::structural::<String>().unwrap(), STRING_FINGERPRINT);
    assert_eq!(<Vec<u8> as Message>::contract().unwrap(), ContractId::bytes());
    assert_eq!(<String as Message>::contract().unwrap(), ContractId::string());
}

#[test]
fn untraceable_type_is_an_error() {
    let err = NonZero::contract().unwrap_err();
    assert!(matches!(err, ContractError::Untraceable { .. }), "{err}");
    assert!(err.to_string().contains("implement Message::fingerprint by hand"), "{err}");
}

#[test]
fn names_are_validated() {
    assert_eq!(validate_name(""), Err(NameError::Empty));
    assert_eq!(validate_name(&"a".repeat(256)), Err(NameError::TooLong { len: 256 }));
    assert!(validate_name(&"a".repeat(255)).is_ok());
    assert_eq!(validate_name("a b"), Err(NameError::BadByte { byte: b' ', index: 1 }));
    assert_eq!(validate_name("a\u{e9}").unwrap_err(), NameError::BadByte { byte: 0xc3, index: 1 });
    let err = ContractId::new("bad\nname", Version::new(1, 0), 0).unwrap_err();
    assert!(err.to_string().contains("bad\\nname"), "{err}");
}

#[test]
fn compatibility_rules() {
    let id = |name: &str, major, minor, fp| {
        ContractId::new(name, Version::new(major, minor), fp).unwrap()
    };
    let ours = id("sensor.reading", 2, 0, 0xaa);
    assert_eq!(check_compatible(&ours, &id("sensor.reading", 2, 7, 0xaa)), Ok(()));

    let major = check_compatible(&ours, &id("sensor.reading", 1, 3, 0xbb)).unwrap_err();
    assert!(matches!(major, Mismatch::Major(_)));
    let text = major.to_string();
    assert!(
        text.contains("we speak sensor.reading 2.0 (fingerprint 0x00000000000000aa)"),
        "{text}"
    );
    assert!(
        text.contains("the peer speaks sensor.reading 1.3 (fingerprint 0x00000000000000bb)"),
        "{text}"
    );
    assert!(text.contains("upgrade the older side"), "{text}");
    assert_eq!(major.sides().1.version, Version::new(1, 3));

    let name = check_compatible(&ours, &id("other", 2, 0, 0xaa)).unwrap_err();
    assert!(matches!(name, Mismatch::Name(_)), "{name}");
    let shape = check_compatible(&ours, &id("sensor.reading", 2, 0, 0xab)).unwrap_err();
    assert!(matches!(shape, Mismatch::Fingerprint(_)), "{shape}");
    assert!(shape.to_string().contains("differ in shape"), "{shape}");
}

#[derive(Serialize, Deserialize)]
struct Node {
    value: u8,
    next: Option<Box<Node>>,
    children: Vec<Node>,
}
crate::message!(Node, "test.node", 1, 0);

#[test]
fn recursive_types_trace() {
    assert_eq!(fp::<Node>(), fp::<Node>());
}
