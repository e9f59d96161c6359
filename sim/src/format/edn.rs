//! The small EDN subset Jepsen-style logs print: one flat map per line.
//!
//! `{:process 0, :type :invoke, :f :get, :key "5", :value nil}`: keyword
//! keys; integer, keyword, string or nil values; commas are whitespace, as
//! in EDN. Nested collections are not needed by any format we read.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EdnValue {
    Nil,
    Integer(i64),
    /// Without the leading colon.
    Keyword(String),
    String(String),
}

impl EdnValue {
    pub(crate) fn describe(&self) -> String {
        match self {
            EdnValue::Nil => "nil".to_string(),
            EdnValue::Integer(value) => value.to_string(),
            EdnValue::Keyword(keyword) => format!(":{keyword}"),
            EdnValue::String(text) => format!("{text:?}"),
        }
    }
}

/// Parses one map. Errors give the 1-based character column.
pub(crate) fn parse_map(text: &str) -> Result<BTreeMap<String, EdnValue>, String> {
    let mut reader = Reader {
        chars: text.chars().collect(),
        position: 0,
    };
    reader.skip_whitespace();
    reader.expect('{')?;
    let mut map = BTreeMap::new();
    loop {
        reader.skip_whitespace();
        if reader.peek() == Some('}') {
            reader.position += 1;
            break;
        }
        let column = reader.column();
        let EdnValue::Keyword(key) = reader.value()? else {
            return Err(format!(
                "column {column}: expected a keyword key such as :process"
            ));
        };
        reader.skip_whitespace();
        let value = reader.value()?;
        if map.insert(key.clone(), value).is_some() {
            return Err(format!("column {column}: key :{key} appears twice"));
        }
    }
    reader.skip_whitespace();
    if reader.peek().is_some() {
        return Err(format!(
            "column {}: unexpected text after the closing brace",
            reader.column()
        ));
    }
    Ok(map)
}

struct Reader {
    chars: Vec<char>,
    position: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn column(&self) -> usize {
        self.position + 1
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|c| c.is_whitespace() || c == ',') {
            self.position += 1;
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        if self.peek() == Some(wanted) {
            self.position += 1;
            return Ok(());
        }
        Err(format!("column {}: expected {wanted:?}", self.column()))
    }

    /// A run of symbol characters (keyword bodies, integers, nil).
    fn token(&mut self) -> String {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, ',' | '{' | '}' | '"' | '[' | ']'))
        {
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    fn value(&mut self) -> Result<EdnValue, String> {
        let column = self.column();
        match self.peek() {
            None => Err(format!("column {column}: unexpected end of line")),
            Some('"') => self.string(),
            Some(':') => {
                self.position += 1;
                let name = self.token();
                if name.is_empty() {
                    return Err(format!("column {column}: empty keyword"));
                }
                Ok(EdnValue::Keyword(name))
            }
            Some(_) => {
                let token = self.token();
                if token == "nil" {
                    return Ok(EdnValue::Nil);
                }
                token
                    .parse()
                    .map(EdnValue::Integer)
                    .map_err(|_| format!("column {column}: expected a value, found {token:?}"))
            }
        }
    }

    fn string(&mut self) -> Result<EdnValue, String> {
        let column = self.column();
        self.position += 1;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("column {column}: unterminated string"));
            };
            self.position += 1;
            match c {
                '"' => return Ok(EdnValue::String(text)),
                '\\' => {
                    let escaped = self
                        .peek()
                        .ok_or_else(|| format!("column {column}: unterminated string"))?;
                    self.position += 1;
                    text.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '"' | '\\' => escaped,
                        other => {
                            return Err(format!(
                                "column {}: unknown escape \\{other}",
                                self.position
                            ))
                        }
                    });
                }
                c => text.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_jepsen_kv_event() {
        let map = parse_map(r#"{:process 0, :type :ok, :f :get, :key "5", :value "x \"0\""}"#)
            .expect("valid map");
        assert_eq!(map["process"], EdnValue::Integer(0));
        assert_eq!(map["type"], EdnValue::Keyword("ok".into()));
        assert_eq!(map["value"], EdnValue::String("x \"0\"".into()));
    }

    #[test]
    fn rejects_broken_maps_with_a_column() {
        for text in [
            r#"{:process 0"#,
            r#"{:process "x}"#,
            r#"{process 0}"#,
            r#"{:a 1} tail"#,
            r#"{:a 1 :a 2}"#,
            "{:a 1x}",
        ] {
            let error = parse_map(text).expect_err(text);
            assert!(error.starts_with("column "), "{text}: {error}");
        }
    }
}
