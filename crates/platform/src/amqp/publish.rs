//! Publishing that counts only once the broker has taken responsibility for the message.
//!
//! Every publish is persistent, `mandatory` (an unroutable message comes back instead of
//! vanishing) and confirmed (the broker acks only after the message is safely in every queue it
//! was routed to). A publish that is nacked, returned or not confirmed in time is an error the
//! caller must handle (the consumer runtime then leaves the source message unacknowledged).

use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};

/// AMQP delivery mode 2: the broker writes the message to disk.
pub const PERSISTENT: u8 = 2;

/// Why a publish did not count.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for exchange `{exchange}` routing key `{routing_key}`")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(connection: &lapin::Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes `body` and waits for the broker's confirm, at most `timeout`.
///
/// `properties` are sent as given except that the delivery mode is forced to persistent.
/// The channel must be in confirm mode ([`confirm_channel`]).
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let publish = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties.with_delivery_mode(PERSISTENT),
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(PublishError::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            // Only reachable on a channel without confirms: a programming error, never "ok".
            Confirmation::NotRequested => Err(PublishError::Nacked),
        }
    };
    tokio::time::timeout(timeout, publish)
        .await
        .map_err(|_| PublishError::Timeout(timeout))?
}
