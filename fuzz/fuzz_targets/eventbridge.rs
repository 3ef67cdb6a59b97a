//! The EventBridge body as ingest reads it (UTF-8 and depth checks, one event or a
//! list, the catalog and source filters, each event's fields), on any bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(read) = pcsync_runtime::service::ingest::read_eventbridge(data, "AWS") {
        for (event, _) in read.events {
            // What the inbox stores must read back as the same event.
            let stored = event.to_stored_json().expect("an event serializes");
            let back = pcsync_engine::Event::from_stored_json(&stored).expect("and reads back");
            assert_eq!(back.id, event.id);
            assert_eq!(back.opportunity_id, event.opportunity_id);
        }
    }
});
