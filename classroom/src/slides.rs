//! Slide decks: a PDF, PNG or JPEG upload becomes a list of small JPEG pages, each stored under
//! the SHA-256 of its bytes so a page is written once and cached forever.
//!
//! Pages are at most [`PAGE_WIDTH`] wide and aim at [`PAGE_BUDGET`] bytes: a classroom on a weak
//! rural link must be able to fetch the next slide in a second or two while the lesson's audio
//! and video keep flowing. PDFs are rasterized by poppler's `pdftoppm`; everything CPU-bound runs
//! on the blocking pool.

use std::fmt::Write as _;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, Rgb, RgbImage};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::model::SlidePage;

/// The largest upload accepted: 50 MiB.
pub const MAX_UPLOAD: usize = 50 * 1024 * 1024;
/// The most pages a deck may have.
pub const MAX_PAGES: usize = 200;
/// The width of a page in pixels; narrower images keep their width.
pub const PAGE_WIDTH: u32 = 960;
/// The size a page's JPEG aims at: 40 KiB.
pub const PAGE_BUDGET: usize = 40 * 1024;

/// The tallest page in pixels (a portrait page is scaled down to fit).
const MAX_HEIGHT: u32 = 1600;
/// Pages over budget are shrunk, but never below this width (unless they started narrower).
const MIN_WIDTH: u32 = 480;
/// The JPEG quality of a page that fits the budget easily (most slides: text on a plain
/// background); above it the bytes buy little a classroom screen shows.
const MAX_QUALITY: u8 = 80;
/// The lowest JPEG quality used before shrinking a page: below it text rings and blurs.
const MIN_QUALITY: u8 = 30;
/// The quality search stops within this many steps of the best that fits.
const QUALITY_PRECISION: u8 = 2;
/// Each shrinking step when even the lowest quality is over budget.
const SHRINK: f64 = 0.8;
/// Uploaded images larger than this on a side are refused before decoding (a decompression bomb
/// is a few KiB of PNG).
const MAX_SOURCE_SIDE: u32 = 16_384;
/// Memory the image decoder may use for one upload.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// A bound on rasterizing one PDF, so a pathological file cannot hold a worker forever.
const PDF_TIMEOUT: Duration = Duration::from_secs(120);
/// pdftoppm scales each page's long side to this many pixels. Scaling the long side (rather than
/// the width) bounds memory for absurd page shapes, and a landscape slide rendered larger and
/// then downscaled with Lanczos keeps thin lines and small text crisp.
const PDF_RENDER_LONG_SIDE: u32 = MAX_HEIGHT;
/// How much of pdftoppm's stderr is kept: a broken PDF can make it print warnings without end.
const STDERR_KEEP: u64 = 16 * 1024;

/// Why an upload could not become a deck.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlideError {
    /// The upload has no bytes.
    #[error("the file is empty")]
    Empty,
    /// The upload is over [`MAX_UPLOAD`].
    #[error("the file is {} MiB; the limit is {} MiB", .size.div_ceil(1024 * 1024), MAX_UPLOAD / (1024 * 1024))]
    TooLarge {
        /// The upload's size in bytes.
        size: usize,
    },
    /// Neither a PDF, a PNG nor a JPEG.
    #[error("unsupported file type: upload a PDF, a PNG or a JPEG")]
    Unsupported,
    /// pdftoppm could not read the PDF.
    #[error("could not read this PDF: {0}")]
    BadPdf(String),
    /// The PDF has no pages.
    #[error("this PDF has no pages")]
    NoPages,
    /// The PDF has more than [`MAX_PAGES`] pages.
    #[error("this PDF has more than {MAX_PAGES} pages; split it into smaller decks")]
    TooManyPages,
    /// Rasterizing the PDF took longer than the time allowed.
    #[error("this PDF took more than {} s to render; try a simpler or smaller file", PDF_TIMEOUT.as_secs())]
    TooSlow,
    /// The PNG or JPEG could not be decoded (or is too large to decode).
    #[error("could not read this image: {0}")]
    BadImage(String),
    /// pdftoppm could not be started: poppler-utils is missing or broken on the server.
    #[error("could not run pdftoppm: {0}")]
    Renderer(#[source] io::Error),
    /// Writing the pages or the scratch files failed.
    #[error("slide storage failed: {0}")]
    Io(#[from] io::Error),
    /// A bug or an unexpected failure while converting (a page pdftoppm wrote that does not
    /// decode, an encoder error, a panic in the conversion).
    #[error("slide conversion failed: {0}")]
    Internal(String),
}

impl SlideError {
    /// Whether the upload itself is at fault (a 4xx), rather than the server (a 500).
    pub fn is_client_error(&self) -> bool {
        match self {
            SlideError::Empty
            | SlideError::TooLarge { .. }
            | SlideError::Unsupported
            | SlideError::BadPdf(_)
            | SlideError::NoPages
            | SlideError::TooManyPages
            | SlideError::TooSlow
            | SlideError::BadImage(_) => true,
            SlideError::Renderer(_) | SlideError::Io(_) | SlideError::Internal(_) => false,
        }
    }
}

/// A directory of slide pages, each a JPEG named `<sha256 hex>.jpg`.
#[derive(Debug, Clone)]
pub struct SlideStore {
    dir: PathBuf,
}

impl SlideStore {
    /// A store in `dir`, which is created on the first upload.
    pub fn new(dir: PathBuf) -> SlideStore {
        SlideStore { dir }
    }

    /// Converts an uploaded PDF, PNG or JPEG into pages, stores them and returns them in order.
    /// A PNG or JPEG is a deck of one page.
    pub async fn ingest(&self, bytes: &[u8]) -> Result<Vec<SlidePage>, SlideError> {
        if bytes.is_empty() {
            return Err(SlideError::Empty);
        }
        if bytes.len() > MAX_UPLOAD {
            return Err(SlideError::TooLarge { size: bytes.len() });
        }
        let kind = detect(bytes).ok_or(SlideError::Unsupported)?;
        tokio::fs::create_dir_all(&self.dir).await?;
        let pages = match kind {
            Kind::Pdf => self.ingest_pdf(bytes).await?,
            Kind::Image(format) => {
                let owned = bytes.to_vec();
                let page = blocking(move || {
                    let image = decode_upload(&owned, format)?;
                    encode_page(image)
                })
                .await?;
                vec![self.store(page).await?]
            }
        };
        let total: u64 = pages.iter().map(|p| u64::from(p.bytes)).sum();
        tracing::info!(pages = pages.len(), upload_bytes = bytes.len(), stored_bytes = total, "slides ingested");
        Ok(pages)
    }

    /// Where the page with this hash is stored, or `None` unless `hash` is 64 lowercase hex
    /// characters (so no other path can be named). The file may not exist.
    pub fn path(&self, hash: &str) -> Option<PathBuf> {
        let valid = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.dir.join(format!("{hash}.jpg")))
    }

    async fn ingest_pdf(&self, bytes: &[u8]) -> Result<Vec<SlidePage>, SlideError> {
        let work = WorkDir::create().await?;
        tokio::fs::write(work.path().join("in.pdf"), bytes).await?;
        tokio::fs::create_dir(work.path().join("out")).await?;
        rasterize(work.path()).await?;

        let rendered = rendered_pages(&work.path().join("out")).await?;
        if rendered.is_empty() {
            return Err(SlideError::NoPages);
        }
        if rendered.len() > MAX_PAGES {
            return Err(SlideError::TooManyPages);
        }
        let mut pages = Vec::with_capacity(rendered.len());
        for path in rendered {
            let png = tokio::fs::read(&path).await?;
            let page = blocking(move || {
                // pdftoppm wrote this file: failing to decode it is our problem, not the user's.
                let image = image::load_from_memory_with_format(&png, ImageFormat::Png)
                    .map_err(|e| SlideError::Internal(format!("decoding a page pdftoppm wrote: {e}")))?;
                encode_page(image)
            })
            .await?;
            pages.push(self.store(page).await?);
        }
        Ok(pages)
    }

    /// Writes a page under its hash unless it is already there. The bytes go to a temporary name
    /// first, so a reader never sees half a page.
    async fn store(&self, page: EncodedPage) -> Result<SlidePage, SlideError> {
        let path = self.dir.join(format!("{}.jpg", page.hash));
        if !tokio::fs::try_exists(&path).await? {
            let tmp = self.dir.join(format!(".{}.{:016x}.tmp", page.hash, rand::random::<u64>()));
            let written = async {
                let mut file = tokio::fs::File::create(&tmp).await?;
                file.write_all(&page.jpeg).await?;
                file.sync_all().await?;
                tokio::fs::rename(&tmp, &path).await
            }
            .await;
            if let Err(e) = written {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e.into());
            }
        }
        Ok(SlidePage {
            hash: page.hash,
            width: page.width,
            height: page.height,
            // A page is a few tens of KiB; MAX_UPLOAD-sized images cannot encode past u32 either.
            bytes: u32::try_from(page.jpeg.len()).unwrap_or(u32::MAX),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pdf,
    Image(ImageFormat),
}

fn detect(bytes: &[u8]) -> Option<Kind> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    const JPEG: &[u8] = b"\xff\xd8\xff";
    if bytes.starts_with(PNG) {
        Some(Kind::Image(ImageFormat::Png))
    } else if bytes.starts_with(JPEG) {
        Some(Kind::Image(ImageFormat::Jpeg))
    } else if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        // Readers accept a header anywhere in the first KiB, and some generators prepend junk.
        Some(Kind::Pdf)
    } else {
        None
    }
}

/// A scratch directory under the system temp dir, removed when dropped (also when the upload is
/// abandoned half-way).
struct WorkDir(PathBuf);

impl WorkDir {
    async fn create() -> io::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("tongxin-slides-{:016x}", rand::random::<u64>()));
        let mut builder = tokio::fs::DirBuilder::new();
        // Uploaded decks may be private: only the server's user may read them.
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&path).await?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(%error, dir = %self.0.display(), "could not remove a slide scratch directory");
        }
    }
}

/// Runs pdftoppm on `<work>/in.pdf`, writing `<work>/out/page-N.png`. One page past
/// [`MAX_PAGES`] is rendered so that an over-long deck is refused rather than cut short.
async fn rasterize(work: &Path) -> Result<(), SlideError> {
    let long_side = PDF_RENDER_LONG_SIDE.to_string();
    let last_page = (MAX_PAGES + 1).to_string();
    // Relative paths from the work dir keep server paths out of the messages users see.
    let mut child = Command::new("pdftoppm")
        .args(["-png", "-scale-to", &long_side, "-l", &last_page, "in.pdf", "out/page"])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(SlideError::Renderer)?;
    let mut stderr = child.stderr.take().ok_or_else(|| SlideError::Internal("pdftoppm's stderr was not piped".into()))?;
    let run = async {
        let mut head = Vec::new();
        (&mut stderr).take(STDERR_KEEP).read_to_end(&mut head).await?;
        tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await?;
        let status = child.wait().await?;
        io::Result::Ok((status, head))
    };
    // On timeout `run` is dropped, then `child`, whose kill_on_drop ends pdftoppm.
    let (status, stderr) = match tokio::time::timeout(PDF_TIMEOUT, run).await {
        Ok(result) => result.map_err(SlideError::Renderer)?,
        Err(_) => return Err(SlideError::TooSlow),
    };
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&stderr);
    tracing::info!(%status, stderr = %stderr.trim(), "pdftoppm refused an upload");
    Err(SlideError::BadPdf(first_error_line(&stderr).unwrap_or_else(|| format!("pdftoppm failed ({status})"))))
}

/// The first line that reports an error, else the first non-empty line, shortened for a message.
fn first_error_line(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines.clone().find(|l| l.contains("Error")).or_else(|| lines.next())?;
    Some(line.chars().take(200).collect())
}

/// The PNGs pdftoppm wrote, in page order. Sorting by the parsed number matters: pdftoppm pads
/// page numbers only to the width of the last page rendered, and `page-10` < `page-2` as text.
async fn rendered_pages(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut numbered = Vec::new();
    let mut entries = tokio::fs::read_dir(out).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let number = name.to_str().and_then(|n| n.strip_prefix("page-")?.strip_suffix(".png")?.parse::<u32>().ok());
        if let Some(number) = number {
            numbered.push((number, entry.path()));
        }
    }
    numbered.sort_unstable_by_key(|(number, _)| *number);
    Ok(numbered.into_iter().map(|(_, path)| path).collect())
}

/// Runs CPU-bound work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, SlideError> + Send + 'static) -> Result<T, SlideError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SlideError::Internal(format!("conversion task failed: {e}")))?
}

/// Decodes an uploaded PNG or JPEG within size limits, turned upright by its EXIF orientation
/// (phone photos of a blackboard are often stored sideways).
fn decode_upload(bytes: &[u8], format: ImageFormat) -> Result<DynamicImage, SlideError> {
    let bad = |e: image::ImageError| SlideError::BadImage(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    // A broken EXIF block is no reason to refuse a picture that decodes.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(bad)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// A page ready to store.
struct EncodedPage {
    jpeg: Vec<u8>,
    hash: String,
    width: u32,
    height: u32,
}

/// Scales a page to fit [`PAGE_WIDTH`] × 1600 and encodes it as a baseline JPEG at the highest
/// quality from 30 to 80 that fits [`PAGE_BUDGET`]; if none does, at smaller sizes down to 480 px
/// wide. A page still over budget at the smallest size is kept (a heavy page beats a refused deck).
fn encode_page(image: DynamicImage) -> Result<EncodedPage, SlideError> {
    let source = flatten_onto_white(image);
    let (width, height) = source.dimensions();
    let fit = (f64::from(PAGE_WIDTH) / f64::from(width)).min(f64::from(MAX_HEIGHT) / f64::from(height)).min(1.0);
    let floor = (f64::from(MIN_WIDTH) / f64::from(width)).min(fit);
    let mut scale = fit;
    loop {
        let page = scaled(&source, scale);
        match encode_within_budget(&page)? {
            Encoded::Fits { jpeg, quality } => {
                tracing::debug!(width = page.width(), height = page.height(), quality, bytes = jpeg.len(), "slide page encoded");
                return Ok(EncodedPage::new(jpeg, &page));
            }
            Encoded::Over { smallest } if scale <= floor => {
                tracing::warn!(
                    width = page.width(),
                    height = page.height(),
                    bytes = smallest.len(),
                    "slide page over budget at the smallest size"
                );
                return Ok(EncodedPage::new(smallest, &page));
            }
            Encoded::Over { .. } => scale = (scale * SHRINK).max(floor),
        }
    }
}

enum Encoded {
    Fits { jpeg: Vec<u8>, quality: u8 },
    Over { smallest: Vec<u8> },
}

/// Encodes at the highest quality in [`MIN_QUALITY`]..=[`MAX_QUALITY`] that fits the budget, by
/// bisection: the size grows with the quality (near enough; whatever is found does fit).
fn encode_within_budget(page: &RgbImage) -> Result<Encoded, SlideError> {
    let best = encode_jpeg(page, MAX_QUALITY)?;
    if best.len() <= PAGE_BUDGET {
        return Ok(Encoded::Fits { jpeg: best, quality: MAX_QUALITY });
    }
    let worst = encode_jpeg(page, MIN_QUALITY)?;
    if worst.len() > PAGE_BUDGET {
        return Ok(Encoded::Over { smallest: worst });
    }
    // `fits` fits the budget; `over` does not.
    let (mut fits, mut jpeg, mut over) = (MIN_QUALITY, worst, MAX_QUALITY);
    while over - fits > QUALITY_PRECISION {
        let quality = fits + (over - fits) / 2;
        let candidate = encode_jpeg(page, quality)?;
        if candidate.len() <= PAGE_BUDGET {
            (fits, jpeg) = (quality, candidate);
        } else {
            over = quality;
        }
    }
    Ok(Encoded::Fits { jpeg, quality: fits })
}

impl EncodedPage {
    fn new(jpeg: Vec<u8>, page: &RgbImage) -> EncodedPage {
        let mut hash = String::with_capacity(64);
        for byte in Sha256::digest(&jpeg) {
            // Writing to a String cannot fail.
            let _ = write!(hash, "{byte:02x}");
        }
        EncodedPage { jpeg, hash, width: page.width(), height: page.height() }
    }
}

/// Composites transparent pixels over white, the colour of a slide's background (a JPEG has no
/// alpha, and dropping it would turn transparent areas black).
fn flatten_onto_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        // At most (255·255 + 127) / 255 = 255, so the cast keeps every value.
        let over_white = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// `source` scaled by `scale` (≤ 1) with Lanczos3. A large reduction is first halved-and-more by
/// area averaging, which keeps Lanczos's cost independent of the source size.
fn scaled(source: &RgbImage, scale: f64) -> RgbImage {
    let (width, height) = source.dimensions();
    // scale ≤ 1, so the results are at most the source's dimensions, which fit u32.
    let new_width = ((f64::from(width) * scale).round() as u32).clamp(1, width);
    let new_height = ((f64::from(height) * scale).round() as u32).clamp(1, height);
    if (new_width, new_height) == (width, height) {
        return source.clone();
    }
    if width >= new_width * 3 && height >= new_height * 3 {
        let coarse = imageops::thumbnail(source, new_width * 2, new_height * 2);
        return imageops::resize(&coarse, new_width, new_height, FilterType::Lanczos3);
    }
    imageops::resize(source, new_width, new_height, FilterType::Lanczos3)
}

fn encode_jpeg(page: &RgbImage, quality: u8) -> Result<Vec<u8>, SlideError> {
    let mut jpeg = Vec::with_capacity(PAGE_BUDGET);
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode_image(page)
        .map_err(|e| SlideError::Internal(format!("encoding a JPEG: {e}")))?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_magic_bytes() {
        assert_eq!(detect(b"%PDF-1.7\n"), Some(Kind::Pdf));
        assert_eq!(detect(b"\xef\xbb\xbf%PDF-1.4\n"), Some(Kind::Pdf));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n...."), Some(Kind::Image(ImageFormat::Png)));
        assert_eq!(detect(b"\xff\xd8\xff\xe0...."), Some(Kind::Image(ImageFormat::Jpeg)));
        assert_eq!(detect(b"GIF89a"), None);
        assert_eq!(detect(b"hello, class"), None);
    }

    #[test]
    fn the_error_line_is_preferred_over_warnings() {
        let stderr = "Syntax Warning: May not be a PDF file (continuing anyway)\nSyntax Error: Couldn't find trailer dictionary\n";
        assert_eq!(first_error_line(stderr).as_deref(), Some("Syntax Error: Couldn't find trailer dictionary"));
        assert_eq!(first_error_line("\n  odd output\n").as_deref(), Some("odd output"));
        assert_eq!(first_error_line(""), None);
    }

    #[test]
    fn transparency_becomes_white() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, image::Rgba([0, 0, 0, 255]));
        let rgb = flatten_onto_white(DynamicImage::ImageRgba8(rgba));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 0]);
    }
}
