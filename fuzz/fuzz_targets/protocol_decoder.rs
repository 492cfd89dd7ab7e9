//! The backup protocol's decoder against arbitrary bytes, as a peer could send them: the frame
//! reader over a stream (header, length bound, checksum) and then each message body. Neither may
//! panic, and neither may allocate beyond the bound the frame's reader was given (PR-22).

#![no_main]

use libfuzzer_sys::fuzz_target;
use online_backup::backup::protocol::{
    read_message_within, Message, MAX_CLIENT_FRAME, MAX_FRAME,
};
use online_backup::store::log::TxEntry;

fuzz_target!(|data: &[u8]| {
    let _ = Message::decode_body(data);
    let _ = TxEntry::decode_body(data);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        for bound in [MAX_CLIENT_FRAME, MAX_FRAME] {
            let mut stream = data;
            // Frames one after another until the bytes run out or one is refused.
            while read_message_within(&mut stream, bound).await.is_ok() {}
        }
    });
});
