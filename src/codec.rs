//! A tiny little-endian, length-prefixed binary codec for our own images
//! (state machine snapshots). Decoding never panics: short or malformed
//! input is an error.

pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { bytes: Vec::new() }
    }

    pub fn u8(&mut self, value: u8) -> &mut Writer {
        self.bytes.push(value);
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Writer {
        self.u64(value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn strings(&mut self, values: &[String]) -> &mut Writer {
        self.u64(values.len() as u64);
        for value in values {
            self.bytes(value.as_bytes());
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < len {
            return Err(format!(
                "image ends early: wanted {len} bytes, {} left",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.u64()?).map_err(|_| "length overflows".to_string())?;
        self.take(len)
    }

    pub fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }

    pub fn strings(&mut self) -> Result<Vec<String>, String> {
        let count = self.u64()?;
        // Each string needs at least its 8-byte length: a larger count is garbage.
        if count > self.rest.len() as u64 / 8 {
            return Err("string count exceeds the image".into());
        }
        (0..count).map(|_| self.string()).collect()
    }

    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}
