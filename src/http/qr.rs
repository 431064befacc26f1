//! `GET /api/v1/links/{code}/qr`: a QR code of the link's short URL, as SVG or PNG.
//!
//! Rendered with a 4-module quiet zone (what scanners expect) and error correction
//! level M. Both images are drawn here from the module grid: the SVG as one path in a
//! view box of the grid, exactly `size` on a side; the PNG in 8-bit greyscale, each
//! module a whole number of pixels (at least 2, or scanners fail), exactly `size` on a
//! side when that allows it. The png crate alone is enough; no image library.

use super::AppState;
use super::extract::{Caller, CodePath};
use super::links::{owned_link, site_of};
use super::problem::ApiError;
use crate::domain::link::Link;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use qrcode::{Color, EcLevel, QrCode};

/// Smallest and largest image edge accepted, in pixels.
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
const DEFAULT_SIZE: u32 = 256;
/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE: usize = 4;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/links/{code}/qr", get(link_qr))
}

/// The image formats a QR code comes in.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum QrFormat {
    Svg,
    Png,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

/// The parameters: format, size, and the link's domain (none: the default domain).
fn parse_params(pairs: Vec<(String, String)>) -> Result<(Format, u32, Option<String>), ApiError> {
    let (mut format, mut size, mut domain) = (Format::Svg, DEFAULT_SIZE, None);
    for (name, value) in pairs {
        match name.as_str() {
            "domain" => domain = Some(value),
            "format" => {
                format = match value.as_str() {
                    "svg" => Format::Svg,
                    "png" => Format::Png,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "format",
                            format!("format must be svg or png (got `{value}`)"),
                        ));
                    }
                }
            }
            "size" => {
                size = value
                    .parse()
                    .ok()
                    .filter(|n| (MIN_SIZE..=MAX_SIZE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "size",
                            format!("size must be {MIN_SIZE} to {MAX_SIZE} pixels (got `{value}`)"),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::invalid_parameter(
                    other,
                    format!("unknown parameter `{other}`; known: format, size, domain"),
                ));
            }
        }
    }
    Ok((format, size, domain))
}

/// A QR code of the link's short URL.
///
/// SVG or PNG, `size` pixels on a side (including the quiet zone), of the short URL
/// in the link's domain followed by `?qr`, which marks scanned visits in analytics.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/qr",
    tag = "links",
    params(
        super::links::CodeParam,
        super::links::DomainParam,
        ("format" = Option<QrFormat>, Query, description = "Image format (default svg)"),
        ("size" = Option<u32>, Query, description = "Edge in pixels (default 256)",
            minimum = 64, maximum = 2048),
    ),
    responses(
        (status = 200, description = "The QR code", content(
            (String = "image/svg+xml"),
            (Vec<u8> = "image/png"),
        )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
    )
)]
pub async fn link_qr(
    State(state): State<AppState>,
    caller: Caller,
    CodePath(code): CodePath,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = super::extract::query_pairs(params)?;
    let (format, size, domain) = parse_params(pairs)?;
    let site = site_of(&state, domain.as_deref())?;
    let link = owned_link(&state, &caller, &site, &code).await?;
    image(&state, &link, format, size)
}

/// A link's QR code as an image answer, `size` pixels on a side (the API's and the
/// dashboard's).
pub fn image(
    state: &AppState,
    link: &Link,
    format: Format,
    size: u32,
) -> Result<Response, ApiError> {
    // The marker tells analytics a visit came from a scan; the redirect ignores it.
    let short_url = format!(
        "{}?{}",
        state.settings.short_url(&link.domain, &link.code),
        super::redirect::QR_MARKER
    );
    let qr = QrCode::with_error_correction_level(short_url.as_bytes(), EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("QR encoding failed: {e}")))?;
    let (content_type, body) = match format {
        Format::Svg => ("image/svg+xml", render_svg(&qr, size).into_bytes()),
        Format::Png => ("image/png", render_png(&qr, size)?),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// An SVG exactly `size` pixels on a side: the module grid (quiet zone included) as
/// the view box, so it scales to the size asked for and stays sharp at any zoom.
fn render_svg(qr: &QrCode, size: u32) -> String {
    use std::fmt::Write;
    let modules = qr.width();
    let total = modules + 2 * QUIET_ZONE;
    let mut path = String::new();
    for (index, color) in qr.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
            let _ = write!(path, "M{x} {y}h1v1h-1z");
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{size}\" \
         height=\"{size}\" viewBox=\"0 0 {total} {total}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{total}\" height=\"{total}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    )
}

/// Pixels per module below which scanners start to fail.
const MIN_MODULE_PIXELS: usize = 2;

/// A greyscale PNG `size` pixels on a side, each module a square of whole pixels and
/// the rest of the edge added to the quiet zone; when `size` cannot give every module
/// [`MIN_MODULE_PIXELS`], the smallest image that does (a little over `size`), since an
/// image that does not scan is no use at any size.
fn render_png(qr: &QrCode, size: u32) -> Result<Vec<u8>, ApiError> {
    let modules = qr.width();
    let colors = qr.to_colors();
    let total = modules + 2 * QUIET_ZONE;
    let scale = (size as usize / total).max(MIN_MODULE_PIXELS);
    let edge = (total * scale).max(size as usize);
    // The pixels left over are split around the code, so it stays centred.
    let margin = (edge - total * scale) / 2;
    let mut pixels = vec![255u8; edge * edge];
    for (index, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let x = margin + (index % modules + QUIET_ZONE) * scale;
            let y = margin + (index / modules + QUIET_ZONE) * scale;
            for row in y..y + scale {
                pixels[row * edge + x..row * edge + x + scale].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, edge as u32, edge as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ApiError::Internal(format!("PNG encoding failed: {e}")))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| ApiError::Internal(format!("PNG encoding failed: {e}")))?;
    writer
        .finish()
        .map_err(|e| ApiError::Internal(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_draws_every_dark_module_in_a_view_box_of_the_grid() {
        let qr =
            QrCode::with_error_correction_level(b"https://sho.rt/abc1234?qr", EcLevel::M).unwrap();
        let svg = render_svg(&qr, 300);
        let dark = qr.to_colors().iter().filter(|c| **c == Color::Dark).count();
        assert_eq!(svg.matches("h1v1h-1z").count(), dark);
        let total = qr.width() + 2 * QUIET_ZONE;
        assert!(
            svg.contains(&format!("viewBox=\"0 0 {total} {total}\"")),
            "{svg}"
        );
        assert!(svg.contains("width=\"300\" height=\"300\""));
    }

    #[test]
    fn png_is_the_size_asked_for_or_the_smallest_that_scans() {
        let qr =
            QrCode::with_error_correction_level(b"https://sho.rt/abc1234?qr", EcLevel::M).unwrap();
        let total = (qr.width() + 2 * QUIET_ZONE) as u32;
        for size in [64, 100, 256, 257, 2048] {
            let png = render_png(&qr, size).unwrap();
            let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
            assert_eq!(width, size.max(total * MIN_MODULE_PIXELS as u32), "{size}");
        }
    }
}
