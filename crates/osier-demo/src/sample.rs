//! A metering sample: what a `compute.instance.*` notification carries, checked before it is
//! stored. Notifications come from the network, so every field is bounded and typed; one that
//! is not a sample is refused with a [`SampleError`] saying why, never stored half-read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event types the metering listener takes (`compute.instance.exists`,
/// `compute.instance.create.end`, ...).
pub const EVENT_TYPES: &str = r"^compute\.instance\..*";

/// The longest identifier or name a sample may carry (the columns' width).
pub const MAX_FIELD_LEN: usize = 255;

/// The largest volume a sample may carry, either sign (2^32): sums of billions of samples
/// stay within 64 bits on every database.
pub const MAX_VOLUME: i64 = 1 << 32;

/// One measurement of one counter of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Unique per sample: a notification delivered twice is stored once.
    pub message_id: String,
    /// The project (tenant) that owns the resource.
    pub project_id: String,
    /// The instance measured.
    pub resource_id: String,
    /// What was measured (`cpu_time`, `memory.usage`, ...).
    pub counter_name: String,
    /// The measured value (whole units, so sums are exact on every database).
    pub volume: i64,
    /// When, as ISO 8601 (`2026-12-02T10:00:00.000000`): sorts as text in time order.
    pub timestamp: String,
}

/// Why a notification is not a sample.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The payload is not an object with the sample's fields, of their types.
    #[error("the payload is not a sample: {0}")]
    Shape(#[source] serde_json::Error),
    /// The volume is beyond [`MAX_VOLUME`].
    #[error("counter_volume {0} is beyond +-{MAX_VOLUME}")]
    VolumeRange(i64),
    /// A field is empty or longer than [`MAX_FIELD_LEN`].
    #[error("field {field} is empty or longer than {MAX_FIELD_LEN} bytes")]
    FieldLength {
        /// The field's name.
        field: &'static str,
    },
}

#[derive(Deserialize)]
struct Payload {
    message_id: String,
    project_id: String,
    resource_id: String,
    counter_name: String,
    counter_volume: i64,
    timestamp: String,
}

impl Sample {
    /// Reads a sample from a notification's payload (extra fields are ignored, as a Python
    /// publisher may add some).
    pub fn from_payload(payload: &Value) -> Result<Sample, SampleError> {
        let p = Payload::deserialize(payload).map_err(SampleError::Shape)?;
        for (field, v) in [
            ("message_id", &p.message_id),
            ("project_id", &p.project_id),
            ("resource_id", &p.resource_id),
            ("counter_name", &p.counter_name),
            ("timestamp", &p.timestamp),
        ] {
            if v.is_empty() || v.len() > MAX_FIELD_LEN {
                return Err(SampleError::FieldLength { field });
            }
        }
        if p.counter_volume.unsigned_abs() > MAX_VOLUME.unsigned_abs() {
            return Err(SampleError::VolumeRange(p.counter_volume));
        }
        Ok(Sample {
            message_id: p.message_id,
            project_id: p.project_id,
            resource_id: p.resource_id,
            counter_name: p.counter_name,
            volume: p.counter_volume,
            timestamp: p.timestamp,
        })
    }

    /// The notification payload that carries this sample.
    pub fn to_payload(&self) -> Value {
        serde_json::json!({
            "message_id": self.message_id,
            "project_id": self.project_id,
            "resource_id": self.resource_id,
            "counter_name": self.counter_name,
            "counter_volume": self.volume,
            "timestamp": self.timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Sample {
        Sample {
            message_id: "m-1".into(),
            project_id: "p".into(),
            resource_id: "r".into(),
            counter_name: "cpu_time".into(),
            volume: 42,
            timestamp: "2026-12-02T10:00:00.000000".into(),
        }
    }

    #[test]
    fn a_sample_survives_its_payload() {
        assert_eq!(
            Sample::from_payload(&sample().to_payload()).unwrap(),
            sample()
        );
    }

    #[test]
    fn extra_payload_fields_are_ignored() {
        let mut p = sample().to_payload();
        p["unit"] = json!("ns");
        assert_eq!(Sample::from_payload(&p).unwrap(), sample());
    }

    #[test]
    fn a_payload_without_a_volume_is_refused() {
        let mut p = sample().to_payload();
        p.as_object_mut().unwrap().remove("counter_volume");
        assert!(matches!(
            Sample::from_payload(&p),
            Err(SampleError::Shape(_))
        ));
    }

    #[test]
    fn a_fractional_or_huge_volume_is_refused() {
        for v in [json!(1.5), json!(1e300), json!("7")] {
            let mut p = sample().to_payload();
            p["counter_volume"] = v;
            assert!(matches!(
                Sample::from_payload(&p),
                Err(SampleError::Shape(_))
            ));
        }
    }

    #[test]
    fn a_volume_beyond_the_bound_is_refused() {
        let mut p = sample().to_payload();
        p["counter_volume"] = json!(i64::MIN);
        assert!(matches!(
            Sample::from_payload(&p),
            Err(SampleError::VolumeRange(_))
        ));
    }

    #[test]
    fn an_overlong_or_empty_field_is_refused() {
        let mut p = sample().to_payload();
        p["resource_id"] = json!("x".repeat(MAX_FIELD_LEN + 1));
        assert!(matches!(
            Sample::from_payload(&p),
            Err(SampleError::FieldLength {
                field: "resource_id"
            })
        ));
        p["resource_id"] = json!("");
        assert!(Sample::from_payload(&p).is_err());
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_refused() {
        for p in [json!(null), json!([1, 2]), json!("sample")] {
            assert!(Sample::from_payload(&p).is_err());
        }
    }
}
