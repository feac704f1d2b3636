//! Helpers shared by fiberlb's benchmarks.
