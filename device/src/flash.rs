//! Flash devices: RAM-backed NorFlash with power-cut injection, and a file-backed one for the simulator.
