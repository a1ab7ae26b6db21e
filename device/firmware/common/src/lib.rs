//! Code shared by the thecal firmware images.
#![no_std]

pub mod stack;
