//! The pump mechanism: a motor that moves a fixed volume per stroke.

/// Volume of one motor stroke: 0.25 µL (250 nL).
///
/// Small enough that the lowest flow (0.048 mL/day) is 192 strokes a day, one every
/// 7.5 minutes, and the largest (24 mL/day) about one a second.
pub const STROKE_NL: u32 = 250;

/// The motor did not complete a stroke (occlusion, mechanical fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotorStall;

/// The pump motor. One call, one stroke of [`STROKE_NL`].
pub trait Motor {
    /// Performs one stroke.
    fn stroke(&mut self) -> Result<(), MotorStall>;
}

/// A motor that counts strokes (simulator, QEMU), optionally stalling after a number of
/// strokes (fault injection).
#[derive(Debug, Clone, Default)]
pub struct CountingMotor {
    /// Strokes performed.
    pub strokes: u64,
    /// Stall on every stroke once `strokes` reaches this.
    pub stall_after: Option<u64>,
}

impl Motor for CountingMotor {
    fn stroke(&mut self) -> Result<(), MotorStall> {
        if self.stall_after.is_some_and(|n| self.strokes >= n) {
            return Err(MotorStall);
        }
        self.strokes += 1;
        Ok(())
    }
}
