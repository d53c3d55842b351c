//! Framing: `[u32 big-endian length][postcard body]`. A compact binary codec
//! keeps messages small, and the length prefix lets a writer put many frames
//! into one stream write while the reader takes them apart again.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends one frame holding `msg` to `buf`.
pub fn encode_into<M: Serialize>(msg: &M, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let body = postcard::to_extend(msg, std::mem::take(buf))?;
    *buf = body;
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(64);
    encode_into(msg, &mut buf)?;
    Ok(buf)
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<M: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    scratch: &mut Vec<u8>,
) -> Result<Option<M>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    scratch.resize(len, 0);
    r.read_exact(scratch).await?;
    Ok(Some(postcard::from_bytes(scratch)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// A stand-in for a system's message enum: the codec is generic.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Read {
            rid: u64,
            epoch: u64,
            sel: Option<u32>,
        },
        WriteOk {
            rid: u64,
        },
    }

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_an_error() {
        let a = Msg::Read {
            rid: 7,
            epoch: 1,
            sel: Some(3),
        };
        let b = Msg::WriteOk { rid: 9 };
        let mut buf = Vec::new();
        encode_into(&a, &mut buf).unwrap();
        encode_into(&b, &mut buf).unwrap();
        let mut r = &buf[..];
        let mut s = Vec::new();
        assert_eq!(
            read_frame::<Msg, _>(&mut r, 1024, &mut s).await.unwrap(),
            Some(a)
        );
        assert_eq!(
            read_frame::<Msg, _>(&mut r, 1024, &mut s).await.unwrap(),
            Some(b)
        );
        assert!(read_frame::<Msg, _>(&mut r, 1024, &mut s)
            .await
            .unwrap()
            .is_none());

        let garbage = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        let mut r = &garbage[..];
        assert!(matches!(
            read_frame::<Msg, _>(&mut r, 1024, &mut s).await,
            Err(FrameError::Decode(_))
        ));
        let huge = [0x7fu8, 0, 0, 0];
        let mut r = &huge[..];
        assert!(matches!(
            read_frame::<Msg, _>(&mut r, 1024, &mut s).await,
            Err(FrameError::TooLarge { .. })
        ));
    }
}
