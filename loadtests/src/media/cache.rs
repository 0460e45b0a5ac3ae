//! Encoded media kept on disk, so that a load test encodes each spec once per machine.
//!
//! One file per spec, named after it. Layout, integers big-endian:
//!
//! ```text
//! "TXLMEDIA"  format version: u16  kind: u8 (1 H.264, 2 Opus)
//! parameter count: u8  parameters: u32 × count   (the spec, so a renamed file is caught)
//! frame count: u32  frames: (flags: u8 (bit 0 keyframe), length: u32, bytes) × count
//! FNV-1a 64 of everything above: u64
//! ```
//!
//! A file that does not parse, does not match the spec or fails its checksum is encoded again
//! and replaced. Files are written to a temporary file in the same directory and renamed into
//! place, so a reader never sees half a file, even with several generators starting at once.

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{EncodedFrame, EncodedVideo, MediaError, OPUS_FRAME_DURATION, OPUS_SAMPLE_RATE, VideoSpec, encode_pattern, encode_tone};

const MAGIC: &[u8; 8] = b"TXLMEDIA";
/// Bump when the layout, the test pattern, the tone, the encoder settings or the pinned encoder
/// crates change: old files then no longer match and are replaced.
const FORMAT_VERSION: u16 = 1;
const KIND_H264: u8 = 1;
const KIND_OPUS: u8 = 2;
const FLAG_KEYFRAME: u8 = 1;

/// `$XDG_CACHE_HOME/tongxin-load`, else `$HOME/.cache/tongxin-load`; `None` if neither variable
/// holds an absolute path. Callers may use any other directory instead.
#[must_use]
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    // The XDG spec says to ignore a relative XDG_CACHE_HOME.
    let base = xdg_cache_home
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| home.map(PathBuf::from).filter(|dir| dir.is_absolute()).map(|home| home.join(".cache")))?;
    Some(base.join("tongxin-load"))
}

/// [`encode_pattern`]`(spec)`, read from `cache_dir` when an earlier call stored it there.
///
/// A missing, corrupt or mismatched file is encoded again and (re)written; if writing fails
/// (read-only directory, full disk) the encoded video is still returned and a warning logged.
///
/// # Errors
///
/// Those of [`encode_pattern`].
pub fn cached_video(cache_dir: &Path, spec: &VideoSpec) -> Result<EncodedVideo, MediaError> {
    spec.validate()?;
    let path = cache_dir.join(video_file_name(spec));
    let params = video_params(spec);
    if let Some(frames) = load(&path, KIND_H264, &params, spec.frame_count()) {
        if frames.first().is_some_and(|(_, keyframe)| *keyframe) {
            let frames = frames.into_iter().map(|(data, keyframe)| EncodedFrame { data, keyframe }).collect();
            return Ok(EncodedVideo { spec: *spec, frames });
        }
        tracing::warn!(path = %path.display(), "cached video does not start with a keyframe; encoding again");
    }
    let video = encode_pattern(spec)?;
    store(&path, KIND_H264, &params, video.frames.iter().map(|frame| (&frame.data[..], frame.keyframe)));
    Ok(video)
}

/// [`encode_tone`]`(seconds, bitrate_bps)`, read from `cache_dir` when an earlier call stored
/// it there; cache behaviour as in [`cached_video`].
///
/// # Errors
///
/// Those of [`encode_tone`].
pub fn cached_tone(cache_dir: &Path, seconds: u32, bitrate_bps: u32) -> Result<Vec<Bytes>, MediaError> {
    let path = cache_dir.join(format!("opus-48k-mono-{bitrate_bps}bps-{seconds}s.v{FORMAT_VERSION}.txmedia"));
    let frame_ms = u32::try_from(OPUS_FRAME_DURATION.as_millis()).unwrap_or(u32::MAX);
    let params = [OPUS_SAMPLE_RATE, 1, frame_ms, bitrate_bps, seconds];
    let frames_per_second = 1000 / frame_ms.max(1);
    if let Some(frames) = load(&path, KIND_OPUS, &params, seconds.saturating_mul(frames_per_second)) {
        return Ok(frames.into_iter().map(|(data, _)| data).collect());
    }
    let frames = encode_tone(seconds, bitrate_bps)?;
    store(&path, KIND_OPUS, &params, frames.iter().map(|frame| (&frame[..], false)));
    Ok(frames)
}

fn video_file_name(spec: &VideoSpec) -> String {
    let VideoSpec { width, height, fps, bitrate_bps, seconds, keyframe_interval_frames } = spec;
    format!("h264-{width}x{height}-{fps}fps-{bitrate_bps}bps-{seconds}s-idr{keyframe_interval_frames}.v{FORMAT_VERSION}.txmedia")
}

fn video_params(spec: &VideoSpec) -> [u32; 6] {
    [spec.width, spec.height, spec.fps, spec.bitrate_bps, spec.seconds, spec.keyframe_interval_frames]
}

/// The frames of the file at `path` if it exists, is intact and describes exactly this media.
fn load(path: &Path, kind: u8, params: &[u32], frame_count: u32) -> Option<Vec<(Bytes, bool)>> {
    let contents = match std::fs::read(path) {
        Ok(contents) => Bytes::from(contents),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "media not cached yet; encoding");
            return None;
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read cached media; encoding again");
            return None;
        }
    };
    match parse(&contents, kind, params, frame_count) {
        Ok(frames) => Some(frames),
        Err(problem) => {
            tracing::warn!(path = %path.display(), problem, "cached media unusable; encoding again");
            None
        }
    }
}

fn parse(contents: &Bytes, kind: u8, params: &[u32], frame_count: u32) -> Result<Vec<(Bytes, bool)>, &'static str> {
    let body_len = contents.len().checked_sub(8).ok_or("too short")?;
    let mut reader = Reader { contents, pos: body_len };
    if reader.u64()? != fnv1a(&contents[..body_len]) {
        return Err("checksum mismatch");
    }
    let body = contents.slice(..body_len);
    let mut reader = Reader { contents: &body, pos: 0 };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("not a media cache file");
    }
    if reader.u16()? != FORMAT_VERSION {
        return Err("other format version");
    }
    if reader.u8()? != kind {
        return Err("other kind of media");
    }
    let stored_params = (0..reader.u8()?).map(|_| reader.u32()).collect::<Result<Vec<_>, _>>()?;
    if stored_params != params {
        return Err("made for another spec");
    }
    if reader.u32()? != frame_count {
        return Err("wrong frame count");
    }
    let mut frames = Vec::with_capacity(usize::try_from(frame_count).unwrap_or(0));
    for _ in 0..frame_count {
        let flags = reader.u8()?;
        let len = usize::try_from(reader.u32()?).map_err(|_| "frame too long")?;
        let start = reader.pos;
        reader.take(len)?;
        frames.push((reader.contents.slice(start..start + len), flags & FLAG_KEYFRAME != 0));
    }
    if reader.pos != body_len {
        return Err("trailing bytes");
    }
    Ok(frames)
}

struct Reader<'a> {
    contents: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], &'static str> {
        let end = self.pos.checked_add(len).ok_or("truncated")?;
        let bytes = self.contents.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "truncated")
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Writes the file, logging rather than failing: the media is usable without its cache.
fn store<'a>(path: &Path, kind: u8, params: &[u32], frames: impl ExactSizeIterator<Item = (&'a [u8], bool)>) {
    if let Err(error) = try_store(path, &serialize(kind, params, frames)) {
        tracing::warn!(path = %path.display(), %error, "cannot write media cache; it will be encoded again next time");
    }
}

fn try_store(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("cache file has no directory"))?;
    std::fs::create_dir_all(dir)?;
    // In the same directory, so that the rename stays on one file system and is atomic.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

fn serialize<'a>(kind: u8, params: &[u32], frames: impl ExactSizeIterator<Item = (&'a [u8], bool)>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.push(kind);
    // At most 6 parameters and frames far below 4 GiB, counts below u32::MAX (validated specs).
    out.push(u8::try_from(params.len()).unwrap_or(u8::MAX));
    for param in params {
        out.extend_from_slice(&param.to_be_bytes());
    }
    out.extend_from_slice(&u32::try_from(frames.len()).unwrap_or(u32::MAX).to_be_bytes());
    for (data, keyframe) in frames {
        out.push(if keyframe { FLAG_KEYFRAME } else { 0 });
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(data);
    }
    let checksum = fnv1a(&out);
    out.extend_from_slice(&checksum.to_be_bytes());
    out
}

/// 64-bit FNV-1a: catches torn or bit-flipped files, no cryptographic claim.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::super::tests::TINY;
    use super::*;

    #[test]
    fn a_cached_video_is_read_back_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let video = cached_video(dir.path(), &TINY).unwrap();
        let path = dir.path().join(video_file_name(&TINY));
        assert!(path.is_file());
        assert_eq!(cached_video(dir.path(), &TINY).unwrap(), video);

        // Proof that the second call reads the file: plant a different, valid one.
        let planted: Vec<Vec<u8>> = (0..30u8).map(|i| vec![0, 0, 0, 1, 0x65, i]).collect();
        let frames = planted.iter().enumerate().map(|(i, data)| (&data[..], i % 10 == 0));
        std::fs::write(&path, serialize(KIND_H264, &video_params(&TINY), frames)).unwrap();
        let read = cached_video(dir.path(), &TINY).unwrap();
        assert_eq!(read.frames[3].data, &planted[3][..]);
        assert!(read.frames[10].keyframe && !read.frames[11].keyframe);
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_encoded_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let video = cached_video(dir.path(), &TINY).unwrap();
        let path = dir.path().join(video_file_name(&TINY));
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        for bad in [flipped, good[..good.len() - 100].to_vec(), b"nonsense".to_vec(), Vec::new()] {
            std::fs::write(&path, &bad).unwrap();
            let again = cached_video(dir.path(), &TINY).unwrap();
            assert_eq!(again.frames.len(), 30);
            assert_eq!(again.frames, video.frames, "OpenH264 with one thread encodes deterministically");
            let rewritten = Bytes::from(std::fs::read(&path).unwrap());
            assert!(parse(&rewritten, KIND_H264, &video_params(&TINY), 30).is_ok());
        }
        // Only the cache file is left: the temporary files were renamed, not abandoned.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_made_for_another_spec_is_not_used() {
        let other = VideoSpec { bitrate_bps: 100_000, ..TINY };
        let contents = Bytes::from(serialize(KIND_H264, &video_params(&other), std::iter::empty()));
        assert_eq!(parse(&contents, KIND_H264, &video_params(&TINY), 0), Err("made for another spec"));
        assert_eq!(parse(&contents, KIND_OPUS, &video_params(&other), 0), Err("other kind of media"));
        assert!(parse(&contents, KIND_H264, &video_params(&other), 0).is_ok());
        assert_ne!(video_file_name(&other), video_file_name(&TINY));
    }

    #[test]
    fn a_cached_tone_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let tone = cached_tone(dir.path(), 1, 16_000).unwrap();
        assert_eq!(tone.len(), 50);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(cached_tone(dir.path(), 1, 16_000).unwrap(), tone);
    }

    #[test]
    fn default_cache_dir_follows_xdg() {
        let dir = |xdg: Option<&str>, home: Option<&str>| cache_dir_from(xdg.map(OsString::from), home.map(OsString::from));
        assert_eq!(dir(Some("/x/cache"), Some("/home/a")), Some(PathBuf::from("/x/cache/tongxin-load")));
        assert_eq!(dir(Some("relative"), Some("/home/a")), Some(PathBuf::from("/home/a/.cache/tongxin-load")));
        assert_eq!(dir(None, Some("/home/a")), Some(PathBuf::from("/home/a/.cache/tongxin-load")));
        assert_eq!(dir(None, None), None);
    }
}
