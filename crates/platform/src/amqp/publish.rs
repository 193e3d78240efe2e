//! Publishing primitives: the persistent delivery mode and confirm-mode channels.
//!
//! Services publish through [`super::publisher::Publisher`] (confirmed, `mandatory`,
//! self-reconnecting, one publish in flight per channel); benchmarks that pipeline thousands of
//! publishes on one channel use these primitives directly.

use lapin::{Channel, options::ConfirmSelectOptions};

/// AMQP delivery mode 2: the broker writes the message to disk.
pub const PERSISTENT: u8 = 2;

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(connection: &lapin::Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}
