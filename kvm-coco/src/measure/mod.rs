//! Launch plans and offline launch measurement.
