//! AMD Platform Security Processor (PSP) driver.

pub mod digest;
pub mod report;

#[cfg(feature = "sim")]
pub mod sim;
