//! Registers, as the netlink ABI numbers them.

/// The verdict register (a map lookup's destination).
pub const VERDICT: u32 = 0;
/// The first 128-bit register (= 32-bit registers 0 to 3).
pub const R1: u32 = 1;
/// The second 128-bit register.
pub const R2: u32 = 2;
/// 32-bit register `n` (0..16): concatenations place each field in the
/// next 32-bit register after the previous field's end.
pub const fn r32(n: u32) -> u32 {
    8 + n
}
