//! Building a breaker: [`CircuitBreakerBuilder`], the settings it checks, and
//! [`BreakerConfigError`].

use super::events::{transition_listener, Listener, Observers};
use super::machine::Inner;
use super::{BreakerEvent, BreakerState, CircuitBreaker};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An invalid [`CircuitBreakerBuilder`] setting, from [`build`](CircuitBreakerBuilder::build).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `max_failures` must be at least 1.
    ZeroMaxFailures,
    /// `call_timeout` must be longer than zero.
    ZeroCallTimeout,
    /// `reset_timeout` must be longer than zero.
    ZeroResetTimeout,
    /// `exponential_backoff` must be a finite number of at least 1.0.
    InvalidBackoffFactor(f64),
    /// `random_factor` must be within `0.0..=1.0`.
    InvalidRandomFactor(f64),
    /// `max_reset_timeout` must not be shorter than `reset_timeout`.
    MaxResetTimeoutTooShort {
        /// The configured reset timeout.
        reset_timeout: Duration,
        /// The configured, shorter, cap.
        max_reset_timeout: Duration,
    },
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerConfigError::ZeroMaxFailures => {
                f.write_str("invalid circuit breaker config: max_failures must be at least 1")
            }
            BreakerConfigError::ZeroCallTimeout => {
                f.write_str("invalid circuit breaker config: call_timeout must be longer than 0")
            }
            BreakerConfigError::ZeroResetTimeout => {
                f.write_str("invalid circuit breaker config: reset_timeout must be longer than 0")
            }
            BreakerConfigError::InvalidBackoffFactor(x) => write!(
                f,
                "invalid circuit breaker config: exponential_backoff must be finite and at least 1.0, got {x}"
            ),
            BreakerConfigError::InvalidRandomFactor(x) => write!(
                f,
                "invalid circuit breaker config: random_factor must be within 0.0..=1.0, got {x}"
            ),
            BreakerConfigError::MaxResetTimeoutTooShort {
                reset_timeout,
                max_reset_timeout,
            } => write!(
                f,
                "invalid circuit breaker config: max_reset_timeout ({max_reset_timeout:?}) is shorter than reset_timeout ({reset_timeout:?})"
            ),
        }
    }
}

impl std::error::Error for BreakerConfigError {}

/// Settings of a [`CircuitBreaker`], from [`CircuitBreaker::builder`].
///
/// Defaults: `max_failures` 5, `call_timeout` 10 s, `reset_timeout` 30 s,
/// `exponential_backoff` 1.0 (no growth), no `max_reset_timeout`, `random_factor` 0.0.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakerBuilder {
    pub(super) name: String,
    pub(super) config: Config,
    pub(super) listeners: Vec<Listener>,
}

impl CircuitBreakerBuilder {
    /// Consecutive failures (in the Closed state) that trip the breaker. At least 1.
    pub fn max_failures(mut self, max_failures: u32) -> Self {
        self.config.max_failures = max_failures;
        self
    }

    /// How long a call may take before it is dropped and counted as a failure. Longer than 0.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// How long the breaker stays open before it lets a trial call through. Longer than 0.
    pub fn reset_timeout(mut self, timeout: Duration) -> Self {
        self.config.reset_timeout = timeout;
        self
    }

    /// Factor by which the reset timeout grows after each failed trial (finite, at least 1.0;
    /// 1.0, the default, means no growth). A successful trial resets it.
    pub fn exponential_backoff(mut self, factor: f64) -> Self {
        self.config.backoff = factor;
        self
    }

    /// Upper bound for the grown reset timeout (not shorter than `reset_timeout`).
    pub fn max_reset_timeout(mut self, max: Duration) -> Self {
        self.config.max_reset_timeout = Some(max);
        self
    }

    /// Random stretch of each Open period, as a fraction of the reset timeout within
    /// `0.0..=1.0`: an Open period lasts between the reset timeout and
    /// `reset timeout × (1 + random_factor)`.
    pub fn random_factor(mut self, factor: f64) -> Self {
        self.config.random_factor = factor;
        self
    }

    /// Registers a listener for every event (see [`CircuitBreaker::on_event`]).
    pub fn on_event(mut self, f: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Registers a listener for state transitions, called with `(from, to)` (see
    /// [`CircuitBreaker::on_transition`]).
    pub fn on_transition(
        mut self,
        f: impl Fn(BreakerState, BreakerState) + Send + Sync + 'static,
    ) -> Self {
        self.listeners.push(transition_listener(f));
        self
    }

    /// Builds the breaker, Closed, or says which setting is invalid.
    pub fn build(self) -> Result<CircuitBreaker, BreakerConfigError> {
        self.config.validate()?;
        let observers = Observers::new(self.listeners);
        Ok(CircuitBreaker {
            inner: Arc::new(Inner::new(self.name, self.config, observers)),
        })
    }
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// A breaker's settings, checked by [`Config::validate`] before it is built.
#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub(super) max_failures: u32,
    pub(super) call_timeout: Duration,
    pub(super) reset_timeout: Duration,
    pub(super) backoff: f64,
    pub(super) max_reset_timeout: Option<Duration>,
    pub(super) random_factor: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_failures: 5,
            call_timeout: Duration::from_secs(10),
            reset_timeout: Duration::from_secs(30),
            backoff: 1.0,
            max_reset_timeout: None,
            random_factor: 0.0,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.max_failures == 0 {
            return Err(BreakerConfigError::ZeroMaxFailures);
        }
        if self.call_timeout.is_zero() {
            return Err(BreakerConfigError::ZeroCallTimeout);
        }
        if self.reset_timeout.is_zero() {
            return Err(BreakerConfigError::ZeroResetTimeout);
        }
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            return Err(BreakerConfigError::InvalidBackoffFactor(self.backoff));
        }
        if !(0.0..=1.0).contains(&self.random_factor) {
            return Err(BreakerConfigError::InvalidRandomFactor(self.random_factor));
        }
        match self.max_reset_timeout {
            Some(max) if max < self.reset_timeout => {
                Err(BreakerConfigError::MaxResetTimeoutTooShort {
                    reset_timeout: self.reset_timeout,
                    max_reset_timeout: max,
                })
            }
            _ => Ok(()),
        }
    }

    /// The base reset timeout after one more failed trial.
    pub(super) fn grow(&self, base: Duration) -> Duration {
        if self.backoff == 1.0 {
            return base;
        }
        match (
            Duration::try_from_secs_f64(base.as_secs_f64() * self.backoff),
            self.max_reset_timeout,
        ) {
            (Ok(grown), Some(max)) => grown.min(max),
            (Ok(grown), None) => grown,
            (Err(_), Some(max)) => max,
            // Beyond what a `Duration` holds, with no cap: stop growing.
            (Err(_), None) => base,
        }
    }

    /// How long one Open period lasts: `base`, stretched by up to `random_factor`.
    pub(super) fn jitter(&self, base: Duration) -> Duration {
        if self.random_factor == 0.0 {
            return base;
        }
        let stretch = 1.0 + self.random_factor * fastrand::f64();
        Duration::try_from_secs_f64(base.as_secs_f64() * stretch).unwrap_or(base)
    }
}
