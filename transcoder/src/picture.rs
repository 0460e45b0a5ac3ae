//! Raw I420 pictures: an owned buffer and a borrowed view of someone else's planes.

use openh264::formats::YUVSource;

/// One borrowed picture plane.
#[derive(Debug, Clone, Copy)]
pub struct PlaneRef<'a> {
    /// Samples, `stride` per row, at least `height` rows (the last may be short of the stride).
    pub data: &'a [u8],
    /// Samples per row that belong to the picture.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Distance between the starts of two rows.
    pub stride: usize,
}

impl<'a> PlaneRef<'a> {
    /// Row `y`, `width` samples.
    ///
    /// # Panics
    ///
    /// If `y` is outside the plane or the plane's data is shorter than its size says.
    #[must_use]
    pub fn row(&self, y: usize) -> &'a [u8] {
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

/// A borrowed I420 picture (4:2:0, chroma planes of half size rounded up).
#[derive(Debug, Clone, Copy)]
pub struct I420Ref<'a> {
    /// Luma.
    pub y: PlaneRef<'a>,
    /// Blue-difference chroma.
    pub u: PlaneRef<'a>,
    /// Red-difference chroma.
    pub v: PlaneRef<'a>,
}

impl<'a> I420Ref<'a> {
    /// A view of anything OpenH264 can encode from (its decoder's output included).
    pub fn from_source(source: &'a impl YUVSource) -> Self {
        let (width, height) = source.dimensions();
        let (sy, su, sv) = source.strides();
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        Self {
            y: PlaneRef { data: source.y(), width, height, stride: sy },
            u: PlaneRef { data: source.u(), width: cw, height: ch, stride: su },
            v: PlaneRef { data: source.v(), width: cw, height: ch, stride: sv },
        }
    }

    /// Width in pixels.
    #[must_use]
    pub const fn width(&self) -> usize {
        self.y.width
    }

    /// Height in pixels.
    #[must_use]
    pub const fn height(&self) -> usize {
        self.y.height
    }
}

/// An owned I420 picture with tightly packed planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Picture {
    /// A black picture of `width × height`.
    #[must_use]
    pub fn new(width: usize, height: usize) -> Self {
        let chroma = width.div_ceil(2) * height.div_ceil(2);
        Self { width, height, y: vec![16; width * height], u: vec![128; chroma], v: vec![128; chroma] }
    }

    /// A copy of a borrowed picture.
    #[must_use]
    pub fn copy_of(source: I420Ref<'_>) -> Self {
        let mut picture = Self::new(source.width(), source.height());
        for (plane, dst) in [source.y, source.u, source.v].into_iter().zip([&mut picture.y, &mut picture.u, &mut picture.v]) {
            for (row, out) in (0..plane.height).zip(dst.chunks_exact_mut(plane.width.max(1))) {
                out.copy_from_slice(plane.row(row));
            }
        }
        picture
    }

    /// Width in pixels.
    #[must_use]
    pub const fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    #[must_use]
    pub const fn height(&self) -> usize {
        self.height
    }

    /// A borrowed view.
    #[must_use]
    pub fn as_ref(&self) -> I420Ref<'_> {
        let (cw, ch) = (self.width.div_ceil(2), self.height.div_ceil(2));
        I420Ref {
            y: PlaneRef { data: &self.y, width: self.width, height: self.height, stride: self.width },
            u: PlaneRef { data: &self.u, width: cw, height: ch, stride: cw },
            v: PlaneRef { data: &self.v, width: cw, height: ch, stride: cw },
        }
    }

    /// The three planes, mutable: luma, then the two chroma planes.
    pub fn planes_mut(&mut self) -> [&mut [u8]; 3] {
        [&mut self.y, &mut self.u, &mut self.v]
    }
}

impl YUVSource for Picture {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let cw = self.width.div_ceil(2);
        (self.width, cw, cw)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}
