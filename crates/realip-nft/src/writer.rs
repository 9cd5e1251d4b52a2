//! Netlink attributes written into a byte buffer: what batches,
//! expressions and conntrack requests are all made of.

const NLA_F_NESTED: u16 = 0x8000;

/// Netlink attribute writer over a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
    /// An attribute outgrew its 16-bit length.
    pub(crate) overflow: bool,
}

fn pad(n: usize) -> usize {
    (n + 3) & !3
}

impl Writer {
    fn header(&mut self, len: usize, ty: u16) {
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
    }

    pub(crate) fn bytes(&mut self, ty: u16, data: &[u8]) {
        self.overflow |= 4 + data.len() > usize::from(u16::MAX);
        self.header(4 + data.len(), ty);
        self.buf.extend_from_slice(data);
        self.buf.resize(pad(self.buf.len()), 0);
    }

    /// A big-endian u32, as nf_tables' attributes are.
    pub(crate) fn u32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, ty: u16, v: u64) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string.
    pub(crate) fn str(&mut self, ty: u16, s: &str) {
        self.header(4 + s.len() + 1, ty);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.buf.resize(pad(self.buf.len()), 0);
    }

    /// Start a nested attribute; [`Writer::end`] fills in its length.
    pub(crate) fn nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.header(0, ty | NLA_F_NESTED);
        at
    }

    pub(crate) fn end(&mut self, at: usize) {
        let len = self.buf.len() - at;
        // A longer attribute would wrap its 16-bit length and the kernel
        // would read a truncated one: remember it, and refuse to send.
        self.overflow |= len > usize::from(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    /// NFTA_DATA_VALUE inside attribute `ty`.
    pub(crate) fn value(&mut self, ty: u16, data: &[u8]) {
        let n = self.nest(ty);
        self.bytes(1, data);
        self.end(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_attribute_is_caught() {
        let mut w = Writer::default();
        w.bytes(1, &vec![0u8; 70_000]);
        assert!(w.overflow);
    }
}
