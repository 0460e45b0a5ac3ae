//! Slide decks end to end: real PDFs through the real pdftoppm, real PNGs through the image
//! decoder, pages checked on disk.

use std::fmt::Write as _;
use std::path::PathBuf;

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use sha2::{Digest, Sha256};
use tongxin_classroom::model::SlidePage;
use tongxin_classroom::slides::{MAX_UPLOAD, PAGE_BUDGET, PAGE_WIDTH, SlideError, SlideStore};

/// A store in a fresh directory, removed when the test ends.
struct TestStore {
    dir: PathBuf,
    store: SlideStore,
}

impl TestStore {
    fn new() -> TestStore {
        let dir = std::env::temp_dir().join(format!("tongxin-slides-test-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        // Not created here: the store creates its directory on the first upload.
        TestStore { store: SlideStore::new(dir.clone()), dir }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn require_pdftoppm() {
    if let Err(e) = std::process::Command::new("pdftoppm").arg("-v").output() {
        panic!("the slide tests need pdftoppm (poppler-utils), which could not be run ({e}): run `scripts/install-deps.sh test`");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::new();
    for byte in Sha256::digest(bytes) {
        write!(hex, "{byte:02x}").unwrap();
    }
    hex
}

fn png(image: &image::DynamicImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// The markers before the first scan: SOF0 means baseline, SOF2 progressive.
fn jpeg_markers(jpeg: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xff, 0xd8], "not a JPEG");
    let mut markers = Vec::new();
    let mut at = 2;
    loop {
        assert_eq!(jpeg[at], 0xff, "JPEG segment expected at {at}");
        let marker = jpeg[at + 1];
        markers.push(marker);
        if marker == 0xda {
            return markers;
        }
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
}

/// Checks a stored page: the file is named by the SHA-256 of its contents, is a baseline JPEG,
/// and has the dimensions and size the page claims. Returns the decoded page.
fn check_stored(store: &TestStore, page: &SlidePage) -> RgbImage {
    let path = store.store.path(&page.hash).expect("a stored page's hash is a valid name");
    assert_eq!(path, store.dir.join(format!("{}.jpg", page.hash)));
    let jpeg = std::fs::read(&path).unwrap_or_else(|e| panic!("page {} not stored: {e}", page.hash));
    assert_eq!(sha256_hex(&jpeg), page.hash, "the file name is the hash of its contents");
    assert_eq!(jpeg.len(), page.bytes as usize);
    let markers = jpeg_markers(&jpeg);
    assert!(markers.contains(&0xc0) && !markers.contains(&0xc2), "baseline JPEG expected, markers {markers:x?}");
    let decoded = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg).unwrap().into_rgb8();
    assert_eq!(decoded.dimensions(), (page.width, page.height));
    decoded
}

/// A PDF with one page per content stream, the given media box, and Helvetica and
/// Helvetica-Bold as /F1 and /F2. Offsets in the xref table are counted as the file is written.
fn pdf(media_box: [u32; 2], contents: &[String]) -> Vec<u8> {
    let page_ids: Vec<usize> = (0..contents.len()).map(|i| 5 + 2 * i).collect();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            page_ids.iter().map(|id| format!("{id} 0 R")).collect::<Vec<_>>().join(" "),
            contents.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    for (content, page_id) in contents.iter().zip(&page_ids) {
        let [width, height] = media_box;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] \
             /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
            page_id + 1
        ));
        // The end-of-line before `endstream` is not part of the stream.
        objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
    }

    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        // Each entry is exactly 20 bytes, the end-of-line included.
        writeln!(table, "{offset:010} 00000 n ").unwrap();
    }
    write!(table, "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).unwrap();
    out.extend_from_slice(table.as_bytes());
    out
}

/// A lesson slide on a 960×540 pt page: a shaded background, a title bar, bullets in several
/// sizes, and per page a bar chart with a grid and a curve, a table of numbers, or a diagram.
fn slide(page: usize) -> String {
    let mut s = String::new();
    // Background: a vertical gradient in 54 bands, as slide templates have.
    for band in 0..54 {
        let shade = 1.0 - f64::from(band) * 0.0015;
        writeln!(s, "{shade:.4} {shade:.4} {:.4} rg 0 {} 960 10 re f", shade - 0.02, band * 10).unwrap();
    }
    // Title bar and title.
    s.push_str("0.12 0.23 0.45 rg 0 460 960 80 re f\n0.95 0.65 0.1 rg 0 456 960 4 re f\n");
    writeln!(s, "BT 1 1 1 rg /F2 34 Tf 40 485 Td (Fractions, lesson 3 - part {page}) Tj ET").unwrap();
    // Bullets in three sizes.
    let bullets = [
        (22, "A fraction names equal parts of one whole."),
        (22, "The denominator says how many parts there are."),
        (18, "The numerator says how many parts we take."),
        (18, "3/4 of a cake: 4 equal slices, we eat 3."),
        (14, "Try it: fold a paper strip into 2, 4 and 8 parts."),
    ];
    let mut y = 410;
    for (size, text) in bullets {
        writeln!(s, "0.2 0.2 0.2 rg 44 {} 6 6 re f", y + size / 4).unwrap();
        writeln!(s, "BT 0.1 0.1 0.1 rg /F1 {size} Tf 60 {y} Td ({text}) Tj ET").unwrap();
        y -= size + 14;
    }
    match page % 3 {
        1 => {
            // A bar chart with a grid, axis labels and a curve of 120 segments.
            s.push_str("0.3 w 0.75 0.75 0.8 RG\n");
            for i in 0..=10 {
                writeln!(s, "560 {y} m 920 {y} l S", y = 60 + i * 30).unwrap();
                writeln!(s, "{x} 60 m {x} 360 l S", x = 560 + i * 36).unwrap();
            }
            s.push_str("1.5 w 0 0 0 RG 560 60 m 920 60 l S 560 60 m 560 360 l S\n");
            let colors = ["0.85 0.3 0.2", "0.2 0.55 0.85", "0.3 0.7 0.35", "0.95 0.7 0.1", "0.6 0.35 0.75"];
            for (i, color) in colors.iter().enumerate() {
                let height = 60 + (i * 53) % 230;
                writeln!(s, "{color} rg {} 60 40 {height} re f", 575 + i * 70).unwrap();
                writeln!(s, "BT 0 0 0 rg /F1 11 Tf {} 44 Td (Week {}) Tj ET", 578 + i * 70, i + 1).unwrap();
            }
            s.push_str("1.2 w 0.1 0.1 0.5 RG 560 210 m\n");
            for i in 1..=120 {
                let x = 560.0 + f64::from(i) * 3.0;
                let y = 210.0 + 110.0 * (f64::from(i) / 12.0).sin() * (1.0 - f64::from(i) / 240.0);
                writeln!(s, "{x:.2} {y:.2} l").unwrap();
            }
            s.push_str("S\n");
        }
        2 => {
            // A 7×8 table of small numbers with ruled lines.
            s.push_str("0.5 w 0.4 0.4 0.4 RG\n");
            for row in 0..=8 {
                writeln!(s, "520 {y} m 930 {y} l S", y = 40 + row * 40).unwrap();
            }
            for col in 0..=7 {
                let x = 520.0 + f64::from(col) * 410.0 / 7.0;
                writeln!(s, "{x:.2} 40 m {x:.2} 360 l S").unwrap();
            }
            for row in 0..8 {
                for col in 0..7 {
                    let (size, font) = if row == 7 { (13, "/F2") } else { (12, "/F1") };
                    let x = 528.0 + f64::from(col) * 410.0 / 7.0;
                    writeln!(s, "BT 0.1 0.1 0.1 rg {font} {size} Tf {x:.2} {} Td ({}/{}) Tj ET", 328 - row * 40, col + 1, row + 2).unwrap();
                }
            }
        }
        _ => {
            // A pie of 8 slices drawn with Bezier arcs, radial lines and a labelled ring.
            let (cx, cy, r) = (730.0_f64, 210.0_f64, 140.0_f64);
            s.push_str("0.98 0.9 0.7 rg\n");
            s.push_str(&circle(cx, cy, r));
            s.push_str("f\n");
            s.push_str("0.8 w 0.3 0.2 0.1 RG\n");
            for i in 0..8 {
                let angle = f64::from(i) * std::f64::consts::TAU / 8.0;
                writeln!(s, "{cx} {cy} m {:.2} {:.2} l S", cx + r * angle.cos(), cy + r * angle.sin()).unwrap();
                let (lx, ly) = (cx + (r + 18.0) * angle.cos() - 8.0, cy + (r + 18.0) * angle.sin() - 4.0);
                writeln!(s, "BT 0.2 0.2 0.2 rg /F1 12 Tf {lx:.2} {ly:.2} Td (1/8) Tj ET").unwrap();
            }
            s.push_str("0.85 0.3 0.2 rg 730 210 m 870 210 l 829 309 l h f\n");
        }
    }
    writeln!(s, "BT 0.45 0.45 0.45 rg /F1 9 Tf 40 14 Td (Tongxin - Lianghe village school, grade 4 - page {page}) Tj ET").unwrap();
    s
}

/// A circle as four Bezier quarter arcs (PDF has no circle operator).
fn circle(cx: f64, cy: f64, r: f64) -> String {
    let k = 0.552_284_8 * r;
    let point = |angle: f64| (cx + r * angle.cos(), cy + r * angle.sin());
    let (x, y) = point(0.0);
    let mut path = format!("{x:.2} {y:.2} m\n");
    for quarter in 0..4 {
        let (a0, a1) = (f64::from(quarter) * std::f64::consts::FRAC_PI_2, f64::from(quarter + 1) * std::f64::consts::FRAC_PI_2);
        let ((x0, y0), (x3, y3)) = (point(a0), point(a1));
        let (x1, y1) = (x0 - k * a0.sin(), y0 + k * a0.cos());
        let (x2, y2) = (x3 + k * a1.sin(), y3 - k * a1.cos());
        writeln!(path, "{x1:.2} {y1:.2} {x2:.2} {y2:.2} {x3:.2} {y3:.2} c").unwrap();
    }
    path
}

#[tokio::test]
async fn a_pdf_becomes_small_pages_stored_under_their_hashes() {
    require_pdftoppm();
    let store = TestStore::new();
    let deck = pdf([960, 540], &(1..=3).map(slide).collect::<Vec<_>>());

    let pages = store.store.ingest(&deck).await.unwrap();

    assert_eq!(pages.len(), 3);
    for (i, page) in pages.iter().enumerate() {
        eprintln!("page {}: {}x{}, {:.1} KiB", i + 1, page.width, page.height, f64::from(page.bytes) / 1024.0);
        assert_eq!((page.width, page.height), (PAGE_WIDTH, 540));
        assert!(page.bytes as usize <= PAGE_BUDGET, "page {} is {} bytes", i + 1, page.bytes);
        let image = check_stored(&store, page);
        // Rendered, not blank: the title bar is dark blue, the body light.
        let title = image.get_pixel(900, 20).0;
        let body = image.get_pixel(480, 300).0;
        assert!(title[2] > title[0] + 40 && title[0] < 80, "title bar colour {title:?}");
        assert!(body.iter().all(|&c| c > 200), "body colour {body:?}");
    }
    let hashes: Vec<&str> = pages.iter().map(|p| p.hash.as_str()).collect();
    assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2] && hashes[0] != hashes[2], "the pages differ");

    let again = store.store.ingest(&deck).await.unwrap();
    assert_eq!(again, pages, "the same deck gives the same pages");
    let files = std::fs::read_dir(&store.dir).unwrap().count();
    assert_eq!(files, 3, "no temporary or duplicate files are left behind");
}

#[tokio::test]
async fn pdf_pages_keep_their_order_past_page_nine() {
    require_pdftoppm();
    let store = TestStore::new();
    // Page n is black from the left edge to n/13 of the width, so the order can be read back.
    let contents: Vec<String> = (1..=12).map(|n| format!("0 0 0 rg 0 0 {} 540 re f", n * 960 / 13)).collect();

    let pages = store.store.ingest(&pdf([960, 540], &contents)).await.unwrap();

    assert_eq!(pages.len(), 12);
    let dark_widths: Vec<usize> = pages
        .iter()
        .map(|page| {
            let image = check_stored(&store, page);
            (0..image.width()).filter(|&x| image.get_pixel(x, image.height() / 2).0[0] < 128).count()
        })
        .collect();
    for (n, width) in dark_widths.iter().enumerate() {
        let expected = (n + 1) * PAGE_WIDTH as usize / 13;
        assert!(width.abs_diff(expected) <= 3, "page {} has {width} dark columns, expected {expected}: {dark_widths:?}", n + 1);
    }
}

/// A deterministic 64-bit LCG (Knuth's MMIX constants); the high bits are used.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 56) as u8
    }
}

/// A 1920×1080 photo of a lesson poster: a lit paper gradient with sensor noise, fine ruled
/// lines, two hand-drawn curves and solid shapes.
fn detailed_picture() -> RgbImage {
    let mut rng = Lcg(0x5eed);
    RgbImage::from_fn(1920, 1080, |x, y| {
        let noise = i32::from(rng.next() % 11) - 5;
        let (xf, yf) = (f64::from(x), f64::from(y));
        let on_curve = [300.0, 900.0].iter().any(|row| (yf - row - 60.0 * (xf / 90.0).sin()).abs() < 2.0);
        let on_rule = y % 64 < 2 || x % 256 < 2;
        let in_disc = (xf - 1400.0).powi(2) + (yf - 540.0).powi(2) < 300.0 * 300.0;
        let in_box = (200..700).contains(&x) && (300..800).contains(&y);
        let base = if on_curve {
            [30, 30, 40]
        } else if in_disc {
            [220, 90, 40]
        } else if in_box {
            [40, 120, 200]
        } else if on_rule {
            [170, 190, 220]
        } else {
            let (x, y) = (x as i32, y as i32);
            [235 - x * 30 / 1920, 238 - y * 25 / 1080, 225 + (x + y) * 25 / 3000]
        };
        Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    })
}

#[tokio::test]
async fn a_detailed_png_becomes_one_page_within_budget() {
    let store = TestStore::new();
    let upload = png(&detailed_picture().into());

    let pages = store.store.ingest(&upload).await.unwrap();

    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    eprintln!("png page: {}x{}, {:.1} KiB", page.width, page.height, f64::from(page.bytes) / 1024.0);
    assert_eq!((page.width, page.height), (960, 540));
    assert!(page.bytes as usize <= PAGE_BUDGET, "page is {} bytes", page.bytes);
    let image = check_stored(&store, page);
    // The disc is still where it was, at half the size.
    let disc = image.get_pixel(700, 270).0;
    assert!(disc[0] > 150 && disc[2] < 110, "disc colour {disc:?}");
}

#[tokio::test]
async fn a_portrait_png_fits_the_height_and_transparency_turns_white() {
    let store = TestStore::new();
    // 1200×2400, transparent around an opaque dark-green centre.
    let picture = RgbaImage::from_fn(1200, 2400, |x, y| {
        if (300..900).contains(&x) && (600..1800).contains(&y) { Rgba([20, 100, 40, 255]) } else { Rgba([0, 0, 0, 0]) }
    });

    let pages = store.store.ingest(&png(&picture.into())).await.unwrap();

    let page = &pages[0];
    assert!(page.width <= PAGE_WIDTH && page.height <= 1600, "{}x{}", page.width, page.height);
    assert_eq!((page.width, page.height), (800, 1600), "scaled to the height, aspect kept");
    let image = check_stored(&store, page);
    assert!(image.get_pixel(10, 10).0.iter().all(|&c| c > 245), "transparent corner {:?}", image.get_pixel(10, 10));
    let centre = image.get_pixel(400, 800).0;
    assert!(centre[1] > centre[0] + 50, "opaque centre {centre:?}");
}

#[tokio::test]
async fn a_small_image_is_not_enlarged() {
    let store = TestStore::new();
    let picture = RgbImage::from_fn(400, 300, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));

    let pages = store.store.ingest(&png(&picture.into())).await.unwrap();

    assert_eq!((pages[0].width, pages[0].height), (400, 300));
    check_stored(&store, &pages[0]);
}

#[tokio::test]
async fn a_corrupt_pdf_is_the_uploaders_error() {
    require_pdftoppm();
    let store = TestStore::new();

    let error = store.store.ingest(b"%PDF-1.4 garbage").await.unwrap_err();

    assert!(matches!(error, SlideError::BadPdf(_)), "{error:?}");
    assert!(error.is_client_error());
    let message = error.to_string();
    assert!(message.starts_with("could not read this PDF: ") && message.len() > 26, "{message}");
    assert!(!message.contains(&*std::env::temp_dir().to_string_lossy()), "no server paths in {message}");
}

#[tokio::test]
async fn other_files_are_refused_with_the_accepted_formats() {
    let store = TestStore::new();

    let error = store.store.ingest(b"Homework: page 12, exercises 1 to 5.\n").await.unwrap_err();

    assert!(matches!(error, SlideError::Unsupported), "{error:?}");
    assert!(error.is_client_error());
    let message = error.to_string();
    assert!(message.contains("PDF") && message.contains("PNG") && message.contains("JPEG"), "{message}");
    assert!(!store.dir.exists(), "nothing is written for a refused upload");
}

#[tokio::test]
async fn empty_and_oversized_uploads_are_refused() {
    let store = TestStore::new();

    let empty = store.store.ingest(b"").await.unwrap_err();
    assert!(matches!(empty, SlideError::Empty) && empty.is_client_error(), "{empty:?}");

    let mut huge = b"%PDF-1.4\n".to_vec();
    huge.resize(MAX_UPLOAD + 1, b' ');
    let too_large = store.store.ingest(&huge).await.unwrap_err();
    assert!(matches!(too_large, SlideError::TooLarge { .. }) && too_large.is_client_error(), "{too_large:?}");
    assert!(too_large.to_string().contains("50 MiB"), "{too_large}");
}

#[tokio::test]
async fn a_broken_png_is_the_uploaders_error() {
    let store = TestStore::new();
    let mut upload = png(&RgbImage::from_pixel(64, 64, Rgb([1, 2, 3])).into());
    upload.truncate(40);

    let error = store.store.ingest(&upload).await.unwrap_err();

    assert!(matches!(error, SlideError::BadImage(_)) && error.is_client_error(), "{error:?}");
}

#[test]
fn only_hashes_name_pages() {
    let store = SlideStore::new(PathBuf::from("/srv/slides"));
    let hash = "a".repeat(64);
    assert_eq!(store.path(&hash), Some(PathBuf::from(format!("/srv/slides/{hash}.jpg"))));
    assert_eq!(store.path("../etc/passwd"), None);
    assert_eq!(store.path(&"A".repeat(64)), None, "uppercase hex");
    assert_eq!(store.path(&"a".repeat(63)), None);
    assert_eq!(store.path(&format!("{}/", "a".repeat(63))), None);
    assert_eq!(store.path(""), None);
}
