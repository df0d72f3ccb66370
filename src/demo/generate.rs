//! A deterministic demo dataset that looks like the real thing: users with device ids and
//! phones, 180 days of orders and social events partitioned by day (`dt=YYYY-MM-DD/`), driven
//! by latent personas so that clustering and lookalikes have structure to find.
//!
//! The ground truth (each user's persona, and whether the user buys brand B01 in the 30 days
//! after the as-of date, drawn from a propensity over observable behaviour) goes to
//! `truth.parquet`, which no job reads: tests use it to check what the models find.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Days of history generated.
pub const DAYS: i64 = 180;
/// Brands `B01`..`B50`.
pub const N_BRANDS: usize = 50;
/// The eight social actions.
pub const ACTIONS: [&str; 8] = [
    "ad_impression",
    "ad_click",
    "article_read",
    "like",
    "share",
    "comment",
    "follow_brand",
    "mini_program_visit",
];
const CATEGORIES: [&str; 20] = [
    "groceries",
    "snacks",
    "beverages",
    "beauty",
    "skincare",
    "fashion",
    "shoes",
    "sports",
    "electronics",
    "phones",
    "home",
    "kitchen",
    "baby",
    "pets",
    "books",
    "toys",
    "health",
    "jewelry",
    "travel",
    "automotive",
];
const TOPICS: [&str; 24] = [
    "beauty",
    "fashion",
    "tech",
    "gaming",
    "sports",
    "fitness",
    "food",
    "cooking",
    "travel",
    "parenting",
    "pets",
    "finance",
    "deals",
    "autos",
    "music",
    "movies",
    "celebrity",
    "health",
    "home_decor",
    "education",
    "news",
    "outdoors",
    "art",
    "photography",
];

/// When in the 180 days a persona is active.
#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    Steady,
    /// Active early, silent for the last months.
    Early,
    /// Signed up recently.
    Late,
}

struct Persona {
    name: &'static str,
    share: f64,
    orders: f64,
    log_mu: f64,
    log_sigma: f64,
    loyalty: f64,
    b01: f64,
    social: [f64; 8],
    age: f64,
    pattern: Pattern,
}

/// The planted personas: rates are per 180 days.
const PERSONAS: [Persona; 8] = [
    Persona {
        name: "bargain_hunter",
        share: 0.16,
        orders: 30.0,
        log_mu: 2.8,
        log_sigma: 0.4,
        loyalty: 0.05,
        b01: 0.0,
        social: [40.0, 9.0, 2.0, 1.5, 0.5, 0.3, 0.2, 3.0],
        age: 34.0,
        pattern: Pattern::Steady,
    },
    Persona {
        name: "brand_loyalist",
        share: 0.12,
        orders: 12.0,
        log_mu: 4.2,
        log_sigma: 0.4,
        loyalty: 0.85,
        b01: 1.5,
        social: [10.0, 4.0, 4.0, 4.0, 0.8, 1.0, 8.0, 2.0],
        age: 37.0,
        pattern: Pattern::Steady,
    },
    Persona {
        name: "social_sharer",
        share: 0.12,
        orders: 5.0,
        log_mu: 3.8,
        log_sigma: 0.5,
        loyalty: 0.2,
        b01: 0.4,
        social: [10.0, 1.5, 12.0, 25.0, 20.0, 8.0, 0.8, 0.8],
        age: 27.0,
        pattern: Pattern::Steady,
    },
    Persona {
        name: "lurker",
        share: 0.18,
        orders: 2.0,
        log_mu: 3.6,
        log_sigma: 0.5,
        loyalty: 0.15,
        b01: 0.0,
        social: [30.0, 0.3, 30.0, 0.5, 0.05, 0.05, 0.1, 0.3],
        age: 40.0,
        pattern: Pattern::Steady,
    },
    Persona {
        name: "dormant",
        share: 0.12,
        orders: 6.0,
        log_mu: 3.7,
        log_sigma: 0.5,
        loyalty: 0.2,
        b01: -0.5,
        social: [12.0, 1.5, 3.0, 2.0, 0.4, 0.3, 0.3, 1.0],
        age: 43.0,
        pattern: Pattern::Early,
    },
    Persona {
        name: "new_user",
        share: 0.10,
        orders: 4.0,
        log_mu: 3.5,
        log_sigma: 0.5,
        loyalty: 0.15,
        b01: 0.2,
        social: [10.0, 3.0, 3.0, 2.0, 0.8, 0.4, 0.6, 2.0],
        age: 24.0,
        pattern: Pattern::Late,
    },
    Persona {
        name: "big_spender",
        share: 0.08,
        orders: 10.0,
        log_mu: 6.0,
        log_sigma: 0.4,
        loyalty: 0.4,
        b01: 0.6,
        social: [6.0, 1.0, 2.0, 0.5, 0.2, 0.1, 0.5, 1.0],
        age: 48.0,
        pattern: Pattern::Steady,
    },
    Persona {
        name: "mini_program_shopper",
        share: 0.12,
        orders: 16.0,
        log_mu: 3.6,
        log_sigma: 0.4,
        loyalty: 0.2,
        b01: 0.3,
        social: [5.0, 1.5, 1.0, 0.5, 0.3, 0.1, 0.3, 40.0],
        age: 31.0,
        pattern: Pattern::Steady,
    },
];

/// Persona names, in the order of the ids written to the truth file.
pub fn persona_names() -> Vec<&'static str> {
    PERSONAS.iter().map(|p| p.name).collect()
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Number of users.
    pub users: usize,
    /// Output folder.
    pub dir: PathBuf,
    /// The as-of date: data covers the 180 days before it.
    pub as_of: NaiveDate,
    /// Random seed.
    pub seed: u64,
}

/// Row counts of what was generated.
#[derive(Debug, Clone, Default)]
pub struct DemoStats {
    /// Users.
    pub users: usize,
    /// Orders.
    pub orders: usize,
    /// Social events.
    pub events: usize,
    /// Share of users who buy B01 in the next 30 days (the truth).
    pub b01_buyer_rate: f64,
}

const CHUNK: usize = 8192;

/// Per-chunk output, columnar, bucketed by day.
#[derive(Default)]
struct DayOrders {
    order_id: Vec<i64>,
    user: Vec<u32>,
    ts: Vec<i64>,
    brand: Vec<u8>,
    category: Vec<u8>,
    amount: Vec<f64>,
    qty: Vec<i32>,
}

#[derive(Default)]
struct DayEvents {
    user: Vec<u32>,
    ts: Vec<i64>,
    action: Vec<u8>,
    brand: Vec<u8>, // 255 = no brand
    topic: Vec<u8>,
    referrer: Vec<u32>, // u32::MAX = none
}

struct UserRow {
    persona: u8,
    imei: Option<String>,
    oaid: Option<String>,
    idfa: Option<String>,
    phone: Option<String>,
    age: Option<i32>,
    gender: Option<&'static str>,
    city_tier: i32,
    signup_days: i32,
    propensity: f64,
    will_buy: bool,
}

struct Chunk {
    users: Vec<UserRow>,
    orders: Vec<DayOrders>,
    events: Vec<DayEvents>,
}

fn brand_weights() -> Vec<f64> {
    // Zipf-like popularity; B01 sits at rank 8, a mid-large brand.
    let mut order: Vec<usize> = (1..N_BRANDS).collect();
    order.insert(7, 0);
    let mut w = vec![0.0; N_BRANDS];
    for (rank, b) in order.iter().enumerate() {
        w[*b] = 1.0 / ((rank + 1) as f64).powf(1.07);
    }
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x / s).collect()
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
}

fn cumsum(w: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x;
            acc
        })
        .collect()
}

fn luhn_digit(body: &[u8; 14]) -> u8 {
    let mut sum = 0u32;
    for (i, d) in body.iter().enumerate() {
        let mut v = *d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - sum % 10) % 10) as u8
}

fn hex_id(rng: &mut ChaCha8Rng, upper: bool) -> String {
    let bytes: [u8; 16] = rng.random();
    let h = hex::encode(bytes);
    let s = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    if upper {
        s.to_uppercase()
    } else {
        s
    }
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .map(|p| p.sample(rng) as u32)
        .unwrap_or(0)
}

const US_PER_DAY: i64 = 86_400_000_000;

fn gen_chunk(
    cfg: &DemoConfig,
    chunk: usize,
    first: usize,
    n: usize,
    brand_cdf: &[f64],
    start_us: i64,
) -> Chunk {
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let persona_cdf = cumsum(&PERSONAS.iter().map(|p| p.share).collect::<Vec<_>>());
    let mut orders: Vec<DayOrders> = (0..DAYS).map(|_| DayOrders::default()).collect();
    let mut events: Vec<DayEvents> = (0..DAYS).map(|_| DayEvents::default()).collect();
    let mut users = Vec::with_capacity(n);
    let normal = Normal::new(0.0, 1.0).expect("valid normal");
    let activity = LogNormal::new(0.0, 0.25).expect("valid lognormal");
    let mut order_seq: i64 = (chunk as i64) * 10_000_000;
    // Users whose shares bring others in: (local user index, shares), to pick referrers from.
    let mut sharers: Vec<(u32, u32)> = Vec::new();
    let mut pending_referrals: Vec<(usize, usize)> = Vec::new(); // (day, index in events[day])
    for i in 0..n {
        let uid = (first + i) as u32;
        let p_idx = pick(&persona_cdf, rng.random::<f64>());
        let p = &PERSONAS[p_idx];
        let mult = activity.sample(&mut rng);
        let (start_day, end_day) = match p.pattern {
            Pattern::Steady => (0.0, DAYS as f64),
            Pattern::Early => (0.0, rng.random_range(20.0..90.0)),
            Pattern::Late => (DAYS as f64 - rng.random_range(10.0..50.0), DAYS as f64),
        };
        let span = end_day - start_day;
        let scale = match p.pattern {
            Pattern::Late => (span / DAYS as f64 * 2.5).clamp(0.2, 1.0),
            _ => 1.0,
        } * mult;
        let fav = pick(brand_cdf, rng.random::<f64>());
        let b01_aff = p.b01 + normal.sample(&mut rng) + if fav == 0 { 1.5 } else { 0.0 };
        let p_b01 = 1.0 / (1.0 + (-(b01_aff - 3.4)).exp());
        let loyalty = (p.loyalty + 0.05 * normal.sample(&mut rng)).clamp(0.0, 0.95);
        let brand_of = |rng: &mut ChaCha8Rng| -> u8 {
            let u: f64 = rng.random();
            if u < p_b01 {
                0
            } else if u < p_b01 + (1.0 - p_b01) * loyalty {
                fav as u8
            } else {
                pick(brand_cdf, rng.random::<f64>()) as u8
            }
        };
        let day_of = |rng: &mut ChaCha8Rng| -> (usize, i64) {
            let d = (start_day + rng.random::<f64>() * span)
                .floor()
                .clamp(0.0, (DAYS - 1) as f64) as usize;
            // Daytime-heavy hours.
            let hour = (12.0 + 4.0 * normal.sample(rng)).clamp(0.0, 23.0) as i64;
            let ts = start_us
                + d as i64 * US_PER_DAY
                + hour * 3_600_000_000
                + rng.random_range(0..3_600_000_000i64);
            (d, ts)
        };
        // Behaviour summaries for the planted propensity.
        let as_of_day = DAYS as usize;
        let (mut b01_orders_90, mut b01_active_90, mut b01_imp_30, mut orders_30) =
            (0u32, 0u32, 0u32, 0u32);
        let n_orders = poisson(&mut rng, p.orders * scale);
        let amount_dist = LogNormal::new(p.log_mu, p.log_sigma).expect("valid lognormal");
        for _ in 0..n_orders {
            let (d, ts) = day_of(&mut rng);
            let brand = brand_of(&mut rng);
            // Each brand sells mostly in one category.
            let category = if rng.random::<f64>() < 0.7 {
                (brand as usize * 7) % CATEGORIES.len()
            } else {
                rng.random_range(0..CATEGORIES.len())
            };
            let amount = (amount_dist.sample(&mut rng) * 100.0).round() / 100.0;
            let o = &mut orders[d];
            order_seq += 1;
            o.order_id.push(order_seq);
            o.user.push(uid);
            o.ts.push(ts);
            o.brand.push(brand);
            o.category.push(category as u8);
            o.amount.push(amount.max(0.01));
            o.qty
                .push(1 + (rng.random::<f64>() * rng.random::<f64>() * 3.0) as i32);
            if brand == 0 && d + 90 >= as_of_day {
                b01_orders_90 += 1;
            }
            if d + 30 >= as_of_day {
                orders_30 += 1;
            }
        }
        let mut shares = 0u32;
        for (a, rate) in p.social.iter().enumerate() {
            let k = poisson(&mut rng, rate * scale);
            for _ in 0..k {
                let (d, ts) = day_of(&mut rng);
                // Impressions, clicks, follows and mini-program visits are always about a brand;
                // reads, likes, shares and comments only sometimes.
                let branded = matches!(a, 0 | 1 | 6 | 7) || rng.random::<f64>() < 0.4;
                let brand = if branded { brand_of(&mut rng) } else { 255 };
                let e = &mut events[d];
                e.user.push(uid);
                e.ts.push(ts);
                e.action.push(a as u8);
                e.brand.push(brand);
                e.topic.push(rng.random_range(0..TOPICS.len()) as u8);
                e.referrer.push(u32::MAX);
                if (a == 2 || a == 7) && rng.random::<f64>() < 0.12 {
                    pending_referrals.push((d, e.user.len() - 1));
                }
                if a == 4 {
                    shares += 1;
                }
                if brand == 0 && d + 90 >= as_of_day && matches!(a, 1 | 3 | 6 | 7) {
                    b01_active_90 += 1;
                }
                if brand == 0 && a == 0 && d + 30 >= as_of_day {
                    b01_imp_30 += 1;
                }
            }
        }
        if shares > 0 {
            sharers.push((uid, shares));
        }
        let ln = |x: u32| (1.0 + x as f64).ln();
        let logit = -4.4
            + 0.9 * ln(b01_orders_90)
            + 0.6 * ln(b01_active_90)
            + 0.35 * ln(b01_imp_30)
            + 0.25 * ln(orders_30)
            + 0.3 * (b01_aff - p.b01)
            + 0.4 * normal.sample(&mut rng);
        let propensity = 1.0 / (1.0 + (-logit).exp());
        let will_buy = rng.random::<f64>() < propensity;

        // Identifiers: Android with IMEI, Android with OAID only, or iOS with IDFA.
        let dev: f64 = rng.random();
        let (imei, oaid, idfa) = if dev < 0.62 {
            let mut body = [0u8; 14];
            body[0] = 8;
            body[1] = 6;
            for d in body.iter_mut().skip(2) {
                *d = rng.random_range(0..10);
            }
            let check = luhn_digit(&body);
            let s: String = body
                .iter()
                .chain(std::iter::once(&check))
                .map(|d| (b'0' + d) as char)
                .collect();
            (Some(s), None, None)
        } else if dev < 0.82 {
            (None, Some(hex_id(&mut rng, false)), None)
        } else {
            (None, None, Some(hex_id(&mut rng, true)))
        };
        let phone = if rng.random::<f64>() < 0.6 {
            Some(format!(
                "1{}{:09}",
                rng.random_range(3..10),
                rng.random_range(0..1_000_000_000u32)
            ))
        } else {
            None
        };
        let age = if rng.random::<f64>() < 0.05 {
            None
        } else {
            Some(
                (p.age + 8.0 * normal.sample(&mut rng))
                    .clamp(16.0, 75.0)
                    .round() as i32,
            )
        };
        let g: f64 = rng.random();
        let gender = if g < 0.06 {
            None
        } else if g < 0.53 {
            Some("f")
        } else {
            Some("m")
        };
        let tier = 1 + pick(&[0.2, 0.45, 0.7, 0.88, 1.0], rng.random::<f64>()) as i32;
        let signup_days = match p.pattern {
            Pattern::Late => start_day as i32 - rng.random_range(0..3),
            _ => -rng.random_range(0..1500),
        };
        users.push(UserRow {
            persona: p_idx as u8,
            imei,
            oaid,
            idfa,
            phone,
            age,
            gender,
            city_tier: tier,
            signup_days,
            propensity,
            will_buy,
        });
    }
    // Visits that came from a share carry the sharer's id, drawn by share count.
    if !sharers.is_empty() {
        let cdf = cumsum(&sharers.iter().map(|(_, s)| *s as f64).collect::<Vec<_>>());
        let total = *cdf.last().unwrap_or(&1.0);
        for (d, idx) in pending_referrals {
            let (ref_uid, _) = sharers[pick(&cdf, rng.random::<f64>() * total)];
            if ref_uid != events[d].user[idx] {
                events[d].referrer[idx] = ref_uid;
            }
        }
    }
    Chunk {
        users,
        orders,
        events,
    }
}

fn user_id(i: u32) -> String {
    format!("u{i:08}")
}

/// A demo email for about half the users, derived from the index alone (so it draws no random
/// numbers and leaves the rest of the data unchanged), with the untidy casing, spaces and Gmail
/// dots real CRM exports have.
fn demo_email(i: u32) -> Option<String> {
    match i % 20 {
        0..=6 => Some(format!("user{i}@example.com")),
        7..=8 => Some(format!(" User{i}@Example.COM ")),
        9..=10 => Some(format!("first.last{i}@gmail.com")),
        _ => None,
    }
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut w = ArrowWriter::try_new(
        file,
        batch.schema(),
        Some(crate::storage::write::parquet_properties()),
    )
    .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    w.write(batch)
        .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    w.close()
        .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// Schema of `orders`.
pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("qty", DataType::Int32, false),
    ]))
}

/// Schema of `social_events`.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("action", DataType::Utf8, false),
        Field::new("brand", DataType::Utf8, true),
        Field::new("topic", DataType::Utf8, false),
        Field::new("referrer_id", DataType::Utf8, true),
    ]))
}

fn brand_name(b: u8) -> String {
    format!("B{:02}", b as usize + 1)
}

/// Generates the dataset under `cfg.dir`: `users.parquet`, `orders/dt=*/`, `social_events/dt=*/`
/// and `truth.parquet`.
pub fn generate(cfg: &DemoConfig) -> Result<DemoStats> {
    if cfg.users == 0 {
        return Err(Error::Usage("--users must be at least 1".into()));
    }
    let first_day = cfg.as_of - Duration::days(DAYS);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let start_us = (first_day - epoch).num_days() * US_PER_DAY;
    let brand_cdf = cumsum(&brand_weights());
    let n_chunks = cfg.users.div_ceil(CHUNK);
    let chunks: Vec<Chunk> = (0..n_chunks)
        .into_par_iter()
        .map(|c| {
            let first = c * CHUNK;
            let n = CHUNK.min(cfg.users - first);
            gen_chunk(cfg, c, first, n, &brand_cdf, start_us)
        })
        .collect();

    // Start from a clean folder so a smaller rerun leaves no stale partitions behind.
    for sub in ["orders", "social_events"] {
        let p = cfg.dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
    }
    std::fs::create_dir_all(&cfg.dir)?;

    // users + truth
    let all_users: Vec<(u32, &UserRow)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(c, ch)| {
            ch.users
                .iter()
                .enumerate()
                .map(move |(i, u)| ((c * CHUNK + i) as u32, u))
        })
        .collect();
    let ids: StringArray = all_users.iter().map(|(i, _)| Some(user_id(*i))).collect();
    let ids: ArrayRef = Arc::new(ids);
    let epoch_days = (cfg.as_of - epoch).num_days() as i32 - DAYS as i32;
    let users_batch = RecordBatch::try_from_iter(vec![
        ("user_id", ids.clone()),
        (
            "imei",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| u.imei.as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "oaid",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| u.oaid.as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "idfa",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| u.idfa.as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "phone",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| u.phone.as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "email",
            Arc::new(
                all_users
                    .iter()
                    .map(|(i, _)| demo_email(*i))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "age",
            Arc::new(all_users.iter().map(|(_, u)| u.age).collect::<Int32Array>()) as ArrayRef,
        ),
        (
            "gender",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| u.gender)
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "city_tier",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(u.city_tier))
                    .collect::<Int32Array>(),
            ) as ArrayRef,
        ),
        (
            "signup_date",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(epoch_days + u.signup_days))
                    .collect::<Date32Array>(),
            ) as ArrayRef,
        ),
    ])
    .map_err(Error::unexpected)?;
    write_parquet(&cfg.dir.join("users.parquet"), &users_batch)?;
    // Users who opted out of ad targeting: every job suppresses them from every segment file.
    let mut optouts = String::from("user_id\n");
    for (i, _) in all_users.iter().filter(|(i, _)| i % 250 == 3) {
        optouts.push_str(&user_id(*i));
        optouts.push('\n');
    }
    std::fs::write(cfg.dir.join("optouts.csv"), optouts)
        .map_err(|e| Error::internal(format!("cannot write optouts.csv: {e}")))?;
    let names = persona_names();
    let truth = RecordBatch::try_from_iter(vec![
        ("user_id", ids),
        (
            "persona",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(names[u.persona as usize]))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "persona_id",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(u.persona as i32))
                    .collect::<Int32Array>(),
            ) as ArrayRef,
        ),
        (
            "will_buy_b01_30d",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(u.will_buy))
                    .collect::<BooleanArray>(),
            ) as ArrayRef,
        ),
        (
            "propensity",
            Arc::new(
                all_users
                    .iter()
                    .map(|(_, u)| Some(u.propensity))
                    .collect::<Float64Array>(),
            ) as ArrayRef,
        ),
    ])
    .map_err(Error::unexpected)?;
    write_parquet(&cfg.dir.join("truth.parquet"), &truth)?;
    let buyers = all_users.iter().filter(|(_, u)| u.will_buy).count();

    // One file per day and table, written in parallel.
    let counts: Vec<Result<(usize, usize)>> = (0..DAYS as usize)
        .into_par_iter()
        .map(|d| {
            let date = first_day + Duration::days(d as i64);
            let dt = date.format("%Y-%m-%d").to_string();
            let parts_o: Vec<&DayOrders> = chunks.iter().map(|c| &c.orders[d]).collect();
            let n_o: usize = parts_o.iter().map(|o| o.user.len()).sum();
            let it_o = || {
                parts_o.iter().flat_map(|o| 0..o.user.len()).zip(
                    parts_o
                        .iter()
                        .flat_map(|o| std::iter::repeat_n(*o, o.user.len())),
                )
            };
            let orders = RecordBatch::try_new(
                orders_schema(),
                vec![
                    Arc::new(it_o().map(|(i, o)| o.order_id[i]).collect::<Int64Array>()),
                    Arc::new(
                        it_o()
                            .map(|(i, o)| Some(user_id(o.user[i])))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(TimestampMicrosecondArray::from(
                        it_o().map(|(i, o)| o.ts[i]).collect::<Vec<i64>>(),
                    )),
                    Arc::new(
                        it_o()
                            .map(|(i, o)| Some(brand_name(o.brand[i])))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        it_o()
                            .map(|(i, o)| Some(CATEGORIES[o.category[i] as usize]))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(it_o().map(|(i, o)| o.amount[i]).collect::<Float64Array>()),
                    Arc::new(it_o().map(|(i, o)| o.qty[i]).collect::<Int32Array>()),
                ],
            )
            .map_err(Error::unexpected)?;
            write_parquet(
                &cfg.dir.join(format!("orders/dt={dt}/part-0.parquet")),
                &orders,
            )?;
            let parts_e: Vec<&DayEvents> = chunks.iter().map(|c| &c.events[d]).collect();
            let n_e: usize = parts_e.iter().map(|e| e.user.len()).sum();
            let it_e = || {
                parts_e.iter().flat_map(|e| 0..e.user.len()).zip(
                    parts_e
                        .iter()
                        .flat_map(|e| std::iter::repeat_n(*e, e.user.len())),
                )
            };
            let events = RecordBatch::try_new(
                events_schema(),
                vec![
                    Arc::new(
                        it_e()
                            .map(|(i, e)| Some(user_id(e.user[i])))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(TimestampMicrosecondArray::from(
                        it_e().map(|(i, e)| e.ts[i]).collect::<Vec<i64>>(),
                    )),
                    Arc::new(
                        it_e()
                            .map(|(i, e)| Some(ACTIONS[e.action[i] as usize]))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        it_e()
                            .map(|(i, e)| (e.brand[i] != 255).then(|| brand_name(e.brand[i])))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        it_e()
                            .map(|(i, e)| Some(TOPICS[e.topic[i] as usize]))
                            .collect::<StringArray>(),
                    ),
                    Arc::new(
                        it_e()
                            .map(|(i, e)| {
                                (e.referrer[i] != u32::MAX).then(|| user_id(e.referrer[i]))
                            })
                            .collect::<StringArray>(),
                    ),
                ],
            )
            .map_err(Error::unexpected)?;
            write_parquet(
                &cfg.dir
                    .join(format!("social_events/dt={dt}/part-0.parquet")),
                &events,
            )?;
            Ok((n_o, n_e))
        })
        .collect();
    let mut stats = DemoStats {
        users: cfg.users,
        b01_buyer_rate: buyers as f64 / cfg.users as f64,
        ..Default::default()
    };
    for c in counts {
        let (o, e) = c?;
        stats.orders += o;
        stats.events += e;
    }
    Ok(stats)
}
