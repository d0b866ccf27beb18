//! The price list a job carries (issue 20: the technician picks the parts used from it).
//!
//! The desk gives it when it makes the job (`POST /api/jobs`, `price_list`): the parts the
//! branch expects the job to need, each with its unit price in the job's currency (R10: what
//! a billable job charges for parts). It is the desk's: no write table grants a device any
//! path under it (`authority`), so a technician cannot change a price on site. What was used
//! is the job's part lines (`parts`, R7, R18), which a device writes, picked from this list
//! or typed in; the list itself is not part of the job the customer acknowledges or the
//! branch signs ([`Job`](crate::job::Job) does not read it).
//!
//! In the document: `price_list`, a list of maps with `part_number`, `name` and
//! `specification` as strings and `unit_price` as an integer in the currency's minor unit,
//! as a part line has them.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, AutomergeError, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::time::Money;

/// The document's key of the list.
pub const PRICE_LIST: &str = "price_list";

/// The most items a job's price list holds: a list for one job, not the branch's catalogue.
pub const MAX_PRICE_ITEMS: usize = 200;

/// One part of the list, as a part line would take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceItem {
    pub part_number: String,
    pub name: String,
    pub specification: String,
    pub unit_price: Money,
}

/// Writes `items` as the job's price list (replacing any list before).
pub fn write_price_list(doc: &mut AutoCommit, items: &[PriceItem]) -> Result<(), AutomergeError> {
    let list = doc.put_object(ROOT, PRICE_LIST, ObjType::List)?;
    for (i, item) in items.iter().enumerate() {
        let map = doc.insert_object(&list, i, ObjType::Map)?;
        doc.put(
            &map,
            "part_number",
            ScalarValue::Str(item.part_number.as_str().into()),
        )?;
        doc.put(&map, "name", ScalarValue::Str(item.name.as_str().into()))?;
        doc.put(
            &map,
            "specification",
            ScalarValue::Str(item.specification.as_str().into()),
        )?;
        doc.put(&map, "unit_price", ScalarValue::Int(item.unit_price.0))?;
    }
    Ok(())
}

/// The job's price list (empty when it has none); an item with a field of the wrong type is
/// left out.
pub fn read_price_list<R: ReadDoc>(doc: &R) -> Vec<PriceItem> {
    let Ok(Some((Value::Object(ObjType::List), list))) = doc.get(ROOT, PRICE_LIST) else {
        return Vec::new();
    };
    let text = |map: &automerge::ObjId, key: &str| match doc.get(map, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    };
    (0..doc.length(&list))
        .filter_map(|i| {
            let Ok(Some((Value::Object(ObjType::Map), map))) = doc.get(&list, i) else {
                return None;
            };
            let unit_price = match doc.get(&map, "unit_price") {
                Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                    ScalarValue::Int(n) => Some(Money(*n)),
                    _ => None,
                },
                _ => None,
            }?;
            Some(PriceItem {
                part_number: text(&map, "part_number")?,
                name: text(&map, "name")?,
                specification: text(&map, "specification")?,
                unit_price,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::doc::{JobDoc, read_job};
    use crate::job::fixtures::new_job;

    fn items() -> Vec<PriceItem> {
        vec![
            PriceItem {
                part_number: "TC-220".into(),
                name: "温控器".into(),
                specification: "220V 10A".into(),
                unit_price: Money(8_500),
            },
            PriceItem {
                part_number: "F-10".into(),
                name: "Fuse".into(),
                specification: "10A".into(),
                unit_price: Money(150),
            },
        ]
    }

    #[test]
    fn a_price_list_reads_back_as_written_and_a_job_without_one_has_none() {
        let mut doc = JobDoc::create(&new_job()).expect("job").into_inner();
        assert!(read_price_list(&doc).is_empty());
        write_price_list(&mut doc, &items()).expect("write");
        assert_eq!(read_price_list(&doc), items());
    }

    #[test]
    fn the_price_list_is_not_in_the_job_the_customer_acknowledges() {
        let job = new_job();
        let mut with = JobDoc::create(&job).expect("job").into_inner();
        write_price_list(&mut with, &items()).expect("write");
        let mut without = JobDoc::create(&job).expect("job").into_inner();
        assert_eq!(
            read_job(with.document()).expect("read"),
            read_job(without.document()).expect("read")
        );
    }
}
