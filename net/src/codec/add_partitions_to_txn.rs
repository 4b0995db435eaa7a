//! AddPartitionsToTxn (API key 24).

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AddPartitionsToTxn versions Sluice decodes.
pub const ADD_PARTITIONS_TO_TXN_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes an AddPartitionsToTxn request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<AddPartitionsToTxnRequest, DecodeError> {
    check_version(
        ApiKey::AddPartitionsToTxn,
        version,
        ADD_PARTITIONS_TO_TXN_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = AddPartitionsToTxnRequest::default();
    // v4 turned the request into a batch of transactions (sent broker-to-broker); clients
    // still use the single-transaction layout of v3 and below.
    if version >= 4 {
        req.transactions = r.compact_array(transaction)?;
    } else {
        req.v3_and_below_transactional_id = r.string_v(flexible)?;
        req.v3_and_below_producer_id = r.i64()?.into();
        req.v3_and_below_producer_epoch = r.i16()?;
        req.v3_and_below_topics = r.array_v(flexible, |r| topic(r, flexible))?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

/// A transaction entry, which only exists in the (flexible) versions 4 and up.
fn transaction(r: &mut Reader) -> Result<AddPartitionsToTxnTransaction, DecodeError> {
    let mut txn = AddPartitionsToTxnTransaction::default();
    txn.transactional_id = r.compact_string()?.into();
    txn.producer_id = r.i64()?.into();
    txn.producer_epoch = r.i16()?;
    txn.verify_only = r.bool()?;
    txn.topics = r.compact_array(|r| topic(r, true))?;
    r.tagged_fields(&mut txn.unknown_tagged_fields)?;
    Ok(txn)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<AddPartitionsToTxnTopic, DecodeError> {
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
