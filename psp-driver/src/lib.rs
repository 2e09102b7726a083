//! AMD Platform Security Processor (PSP) driver.

pub mod digest;

#[cfg(feature = "sim")]
pub mod sim;
