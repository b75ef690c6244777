//! `closed_set!`: one source for a closed set of names (an enum of unit variants, each with its
//! stable string), from which everything else is generated: the enum, `ALL`, `as_str`, `parse`,
//! `Display`, serde as the string, and a JSON Schema `oneOf` with each variant's doc. A
//! `#[default = Member]` line after the docs adds `Default`.
//!
//! Closed sets become metric labels, research filters and schema enums, so they must not drift:
//! a hand-written list beside a `match` is two places to forget. Every such set in the project
//! is declared with this macro, and [`tests::assert_closed_set`] checks a set's ids are unique
//! and round-trip.
//!
//! ```
//! vantage_measurement::closed_set! {
//!     /// How a thing went.
//!     pub enum Outcome {
//!         /// It worked.
//!         Fine => "fine",
//!         /// It did not.
//!         Broken => "broken",
//!     }
//! }
//! assert_eq!(Outcome::parse("broken"), Some(Outcome::Broken));
//! assert_eq!(Outcome::ALL.len(), 2);
//! assert_eq!(serde_json::to_string(&Outcome::Fine).unwrap(), "\"fine\"");
//! ```

/// Declare a closed set; see the [module docs](self).
#[macro_export]
macro_rules! closed_set {
    (
        $(#[doc = $doc:literal])*
        $(#[default = $default:ident])?
        $vis:vis enum $name:ident {
            $( $(#[doc = $vdoc:literal])* $variant:ident => $id:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[doc = $vdoc])* $variant, )+
        }

        impl $name {
            /// Every member, in declaration order (metric pre-initialisation, schemas, tests).
            pub const ALL: &'static [$name] = &[ $( Self::$variant, )+ ];

            /// The stable string used in JSON, filters and metric labels.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $id, )+ }
            }

            /// The member with this string, if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|member| member.as_str() == s)
            }
        }

        $(
            impl ::std::default::Default for $name {
                fn default() -> Self {
                    Self::$default
                }
            }
        )?

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as $crate::__private::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    let expected: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
                    <D::Error as $crate::__private::serde::de::Error>::custom(format!(
                        "unknown {} `{s}`, expected one of: {}",
                        stringify!($name),
                        expected.join(", ")
                    ))
                })
            }
        }

        impl $crate::__private::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut $crate::__private::schemars::SchemaGenerator) -> $crate::__private::schemars::Schema {
                let one_of: Vec<$crate::__private::serde_json::Value> = vec![ $(
                    $crate::__private::serde_json::json!({
                        "description": $crate::closed_set::doc_text(&[ $($vdoc),* ]),
                        "type": "string",
                        "const": $id,
                    }),
                )+ ];
                $crate::__private::schemars::json_schema!({
                    "description": $crate::closed_set::doc_text(&[ $($doc),* ]),
                    "oneOf": one_of,
                })
            }
        }
    };
}

/// Doc-comment lines joined as rustdoc shows them (the schema's descriptions).
#[doc(hidden)]
pub fn doc_text(lines: &[&str]) -> String {
    let mut text = String::new();
    for line in lines {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.is_empty() {
            text.push_str("\n\n");
        } else {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push(' ');
            }
            text.push_str(line);
        }
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    /// The members' ids are unique, non-empty, and each round-trips through `parse` and serde.
    pub fn assert_closed_set<T>(all: &[T], as_str: impl Fn(&T) -> &'static str, parse: impl Fn(&str) -> Option<T>)
    where
        T: PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut seen = HashSet::new();
        for member in all {
            let id = as_str(member);
            assert!(!id.is_empty(), "{member:?} has an empty id");
            assert!(seen.insert(id), "duplicate id {id}");
            assert_eq!(parse(id).as_ref(), Some(member));
            let json = serde_json::to_string(member).expect("serialise");
            assert_eq!(json, format!("\"{id}\""));
            let back: T = serde_json::from_str(&json).expect("parse");
            assert_eq!(&back, member);
        }
    }

    crate::closed_set! {
        /// A set for the macro's own tests.
        ///
        /// Second paragraph.
        enum Sample {
            /// First.
            One => "one",
            /// Second,
            /// on two lines.
            Two => "two",
        }
    }

    #[test]
    fn the_macro_generates_a_consistent_set() {
        assert_closed_set(Sample::ALL, |m| m.as_str(), Sample::parse);
        assert_eq!(Sample::ALL, &[Sample::One, Sample::Two]);
        assert_eq!(Sample::Two.to_string(), "two");
        let err = serde_json::from_str::<Sample>("\"three\"").expect_err("unknown");
        assert!(err.to_string().contains("unknown Sample `three`, expected one of: one, two"), "{err}");
    }

    #[test]
    fn the_schema_lists_each_member_with_its_doc() {
        let schema = serde_json::to_value(schemars::schema_for!(Sample)).expect("schema");
        assert_eq!(schema["description"], "A set for the macro's own tests.\n\nSecond paragraph.");
        assert_eq!(schema["oneOf"][1]["const"], "two");
        assert_eq!(schema["oneOf"][1]["description"], "Second, on two lines.");
    }
}
