//! Typed ends of a ring: encode + push with the sequence number, pop + decode + check it.
//!
//! The sequence number of a message is its ring position plus one. Both ends derive it from the
//! ring's shared indices, so it survives a restart of either process without any extra state,
//! and a receiver that finds a different number in a slot knows the slot holds a stale, replayed
//! or misplaced message.

use super::message::{decode, encode, DecodeError, EncodeError, Frame, Message};
use super::ring::{Consumer, Producer, RingError, RingStorage};

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Why a received slot was not accepted. The slot is consumed either way; report the error to
/// the peer (a `Rejected` reply) and carry on with the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("message #{seq} is malformed: {error}")]
    Malformed { seq: u64, error: DecodeError },
    #[error("message out of order: expected sequence number {expected}, got {got} (replayed or stale slot)")]
    OutOfOrder {
        expected: u64,
        got: u64,
        generation: u64,
    },
}

/// The sending end of a ring.
#[derive(Debug)]
pub struct Sender<S: RingStorage> {
    producer: Producer<S>,
}

impl<S: RingStorage> Sender<S> {
    pub fn new(producer: Producer<S>) -> Self {
        Sender { producer }
    }

    /// Sends one message of `generation`; returns its sequence number.
    ///
    /// # Errors
    /// The message does not encode, or the ring is full or corrupt.
    pub fn send(&mut self, generation: u64, message: Message) -> Result<u64, SendError> {
        let seq = self.producer.position().wrapping_add(1);
        let bytes = encode(&Frame {
            seq,
            generation,
            message,
        })?;
        self.producer.try_push(&bytes)?;
        Ok(seq)
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.producer.capacity()
    }
}

/// The receiving end of a ring.
#[derive(Debug)]
pub struct Receiver<S: RingStorage> {
    consumer: Consumer<S>,
}

impl<S: RingStorage> Receiver<S> {
    pub fn new(consumer: Consumer<S>) -> Self {
        Receiver { consumer }
    }

    /// The next frame, if any, decoded and checked.
    ///
    /// # Errors
    /// The ring is corrupt, or the slot is malformed or out of sequence (it is consumed).
    pub fn try_recv(&mut self) -> Result<Option<Frame>, RecvError> {
        let Some(popped) = self.consumer.try_pop()? else {
            return Ok(None);
        };
        let expected = popped.position.wrapping_add(1);
        let frame = decode(&popped.bytes).map_err(|error| RecvError::Malformed {
            seq: expected,
            error,
        })?;
        if frame.seq != expected {
            return Err(RecvError::OutOfOrder {
                expected,
                got: frame.seq,
                generation: frame.generation,
            });
        }
        Ok(Some(frame))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::message::SLOT_SIZE;
    use super::super::ring::heap_channel;
    use super::*;

    #[test]
    fn sequence_numbers_follow_positions() {
        let (p, c) = heap_channel(4).unwrap();
        let mut tx = Sender::new(p);
        let mut rx = Receiver::new(c);
        for i in 0..10u64 {
            assert_eq!(tx.send(5, Message::Begin).unwrap(), i + 1);
            let f = rx.try_recv().unwrap().unwrap();
            assert_eq!((f.seq, f.generation, f.message), (i + 1, 5, Message::Begin));
        }
        assert_eq!(rx.try_recv(), Ok(None));
    }

    #[test]
    fn replayed_and_garbage_slots_are_reported() {
        let (mut p, c) = heap_channel(4).unwrap();
        let mut rx = Receiver::new(c);
        let replay = encode(&Frame {
            seq: 1,
            generation: 3,
            message: Message::Abort,
        })
        .unwrap();
        p.try_push(&replay).unwrap();
        assert!(rx.try_recv().unwrap().is_some());
        // The same bytes again at position 1: a replay.
        p.try_push(&replay).unwrap();
        assert_eq!(
            rx.try_recv(),
            Err(RecvError::OutOfOrder {
                expected: 2,
                got: 1,
                generation: 3
            })
        );
        p.try_push(&[0xAB; SLOT_SIZE]).unwrap();
        assert!(matches!(
            rx.try_recv(),
            Err(RecvError::Malformed { seq: 3, .. })
        ));
        // The stream carries on after a reported error.
        let mut tx = Sender::new(p);
        tx.send(3, Message::Applied).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap().message, Message::Applied);
    }
}
