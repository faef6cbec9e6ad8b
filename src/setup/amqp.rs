//! One AMQP 0-9-1 session with the broker as a tenant's user (the `amqprs` client, never
//! hand-made frames): log in, open the tenant's vhost, open a channel and passively declare
//! an exchange (`activate`'s vhost probe), or count the messages of queues (the backup's
//! manifest); the broker itself decides whether the user
//! may use the vhost and whether the exchange exists.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{Channel, ExchangeDeclareArguments, QueueDeclareArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};

/// Where and as whom to log in.
pub struct Login<'a> {
    pub host: &'a str,
    pub port: u16,
    pub vhost: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

/// Why a session did not get as far as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpError {
    /// No TCP connection, or the broker did not speak AMQP 0-9-1.
    #[error("cannot reach the broker at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The broker closed the connection during the login (wrong user or password: RabbitMQ
    /// closes the socket after `Connection.Start-Ok` unless the client asked for the
    /// `authentication_failure_close` capability).
    #[error("the broker refused the login of user {user}: {detail}")]
    LoginRefused { user: String, detail: String },
    /// `Connection.Open` of the vhost was answered by `Connection.Close` (530 NOT_ALLOWED:
    /// the user has no permission on the vhost, or the vhost does not exist).
    #[error("user {user} may not open vhost {vhost}: {code} {text}")]
    VhostRefused {
        user: String,
        vhost: String,
        /// The reply code of the broker's `Connection.Close` (0 when it could not be read).
        code: u16,
        text: String,
    },
    /// The broker closed the channel (404 NOT_FOUND for a passive declare of a missing
    /// exchange, 403 ACCESS_REFUSED…).
    #[error("{action} in vhost {vhost}: the broker closed the channel: {code} {text}")]
    ChannelClosed {
        action: String,
        vhost: String,
        code: u16,
        text: String,
    },
    /// Any other failure of the client.
    #[error("{action} in vhost {vhost}: {detail}")]
    Failed {
        action: String,
        vhost: String,
        detail: String,
    },
    /// The whole session took longer than its limit.
    #[error("no answer from the broker at {endpoint} within {seconds} s")]
    TimedOut { endpoint: String, seconds: u64 },
}

/// Logs in to `login.vhost` and closes the connection again, within `timeout`.
pub fn open_vhost(login: &Login<'_>, timeout: Duration) -> Result<(), AmqpError> {
    run(login, None, timeout)
}

/// Logs in to `login.vhost`, opens a channel and declares `exchange` passively (it must
/// exist: nothing is created), then closes the channel and the connection, all within
/// `timeout`.
pub fn check_exchange(
    login: &Login<'_>,
    exchange: &str,
    timeout: Duration,
) -> Result<(), AmqpError> {
    run(login, Some(exchange), timeout)
}

/// The number of ready messages in each of `queues` of `login.vhost`, from a passive
/// `Queue.Declare` each (`Declare-Ok` carries the broker's own count, not a sampled
/// statistic), within `timeout`.
pub fn queue_counts(
    login: &Login<'_>,
    queues: &[String],
    timeout: Duration,
) -> Result<Vec<u32>, AmqpError> {
    let endpoint = format!("{}:{}", login.host, login.port);
    let runtime = runtime(&endpoint)?;
    runtime.block_on(async {
        let counted = async {
            let connection = connect(login, &endpoint).await?;
            let result = count(&connection, login.vhost, queues).await;
            let _ = connection.close().await;
            result
        };
        match tokio::time::timeout(timeout, counted).await {
            Ok(r) => r,
            Err(_) => Err(AmqpError::TimedOut {
                endpoint,
                seconds: timeout.as_secs(),
            }),
        }
    })
}

fn runtime(endpoint: &str) -> Result<tokio::runtime::Runtime, AmqpError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AmqpError::Unreachable {
            endpoint: endpoint.to_owned(),
            detail: format!("cannot start the client's runtime: {e}"),
        })
}

fn run(login: &Login<'_>, exchange: Option<&str>, timeout: Duration) -> Result<(), AmqpError> {
    let endpoint = format!("{}:{}", login.host, login.port);
    let runtime = runtime(&endpoint)?;
    runtime.block_on(async {
        match tokio::time::timeout(timeout, session(login, exchange, &endpoint)).await {
            Ok(r) => r,
            Err(_) => Err(AmqpError::TimedOut {
                endpoint,
                seconds: timeout.as_secs(),
            }),
        }
    })
}

async fn session(
    login: &Login<'_>,
    exchange: Option<&str>,
    endpoint: &str,
) -> Result<(), AmqpError> {
    let connection = connect(login, endpoint).await?;
    let result = match exchange {
        Some(x) => declare(&connection, login.vhost, x).await,
        None => Ok(()),
    };
    // Best effort: the broker drops the connection's resources when the socket closes anyway.
    let _ = connection.close().await;
    result
}

/// A connection to `login.vhost`: reachability first, so that a closed port is told apart
/// from a refused login.
async fn connect(login: &Login<'_>, endpoint: &str) -> Result<Connection, AmqpError> {
    tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| AmqpError::Unreachable {
            endpoint: endpoint.to_owned(),
            detail: e.to_string(),
        })?;
    let mut args = OpenConnectionArguments::new(login.host, login.port, login.user, login.password);
    args.virtual_host(login.vhost)
        .connection_name(&format!("provisio {}", login.vhost));
    Connection::open(&args)
        .await
        .map_err(|e| open_error(login, endpoint, e))
}

/// Sorts a failure of `Connection::open` into reachability, login and vhost refusals.
fn open_error(login: &Login<'_>, endpoint: &str, e: amqprs::error::Error) -> AmqpError {
    use amqprs::error::Error as E;
    let detail = e.to_string();
    match e {
        // The reply to `Connection.Open` was a `Connection.Close`.
        E::ConnectionOpenError(ref m) if m.starts_with("failed to open connection") => {
            let (code, text) = close_reply(m).unwrap_or((0, detail));
            AmqpError::VhostRefused {
                user: login.user.to_owned(),
                vhost: login.vhost.to_owned(),
                code,
                text,
            }
        }
        // The socket closed (or a Close came) between Start-Ok and Tune: the login.
        E::NetworkError(_) | E::ConnectionOpenError(_) if !detail.contains("negotiate") => {
            AmqpError::LoginRefused {
                user: login.user.to_owned(),
                detail,
            }
        }
        _ => AmqpError::Unreachable {
            endpoint: endpoint.to_owned(),
            detail,
        },
    }
}

/// The `reply_code`/`reply_text` of a `Close` frame in the client's message (its Debug form).
fn close_reply(m: &str) -> Option<(u16, String)> {
    let code = m.split("reply_code: ").nth(1)?.split([',', ' ']).next()?;
    let text = m.split("reply_text: ").nth(1)?.split('"').nth(1)?;
    Some((code.parse().ok()?, text.to_owned()))
}

type Closed = Arc<Mutex<Option<(u16, String)>>>;

/// A channel whose closing by the broker is recorded (its code and text).
async fn watched_channel(
    connection: &Connection,
    vhost: &str,
) -> Result<(Channel, Closed), AmqpError> {
    let failed = |action: &str, e: amqprs::error::Error| AmqpError::Failed {
        action: action.to_owned(),
        vhost: vhost.to_owned(),
        detail: e.to_string(),
    };
    let channel = connection
        .open_channel(None)
        .await
        .map_err(|e| failed("open a channel", e))?;
    let closed = Arc::new(Mutex::new(None));
    channel
        .register_callback(CloseRecorder(closed.clone()))
        .await
        .map_err(|e| failed("watch the channel", e))?;
    Ok((channel, closed))
}

/// A failed request on a watched channel: the broker's reason when it closed the channel.
fn channel_error(
    closed: &Closed,
    action: String,
    vhost: &str,
    e: amqprs::error::Error,
) -> AmqpError {
    match closed.lock().map(|c| c.clone()) {
        Ok(Some((code, text))) => AmqpError::ChannelClosed {
            action,
            vhost: vhost.to_owned(),
            code,
            text,
        },
        _ => AmqpError::Failed {
            action,
            vhost: vhost.to_owned(),
            detail: e.to_string(),
        },
    }
}

async fn declare(connection: &Connection, vhost: &str, exchange: &str) -> Result<(), AmqpError> {
    let (channel, closed) = watched_channel(connection, vhost).await?;
    let action = format!("declare exchange {exchange} passively");
    let args = ExchangeDeclareArguments::new(exchange, "topic")
        .passive(true)
        .finish();
    match channel.exchange_declare(args).await {
        Ok(()) => {
            let _ = channel.close().await;
            Ok(())
        }
        Err(e) => Err(channel_error(&closed, action, vhost, e)),
    }
}

async fn count(
    connection: &Connection,
    vhost: &str,
    queues: &[String],
) -> Result<Vec<u32>, AmqpError> {
    let mut out = Vec::with_capacity(queues.len());
    for q in queues {
        let action = format!("count the messages of queue {q}");
        let (channel, closed) = watched_channel(connection, vhost).await?;
        let args = QueueDeclareArguments::new(q).passive(true).finish();
        match channel.queue_declare(args).await {
            Ok(Some((_, messages, _))) => {
                out.push(messages);
                let _ = channel.close().await;
            }
            Ok(None) => {
                return Err(AmqpError::Failed {
                    action,
                    vhost: vhost.to_owned(),
                    detail: "no Declare-Ok".to_owned(),
                });
            }
            Err(e) => return Err(channel_error(&closed, action, vhost, e)),
        }
    }
    Ok(out)
}

/// Keeps the code and text of the broker's `Channel.Close` (the client then answers
/// `Close-Ok` itself); ignores everything else, as the probe neither publishes nor consumes.
struct CloseRecorder(Arc<Mutex<Option<(u16, String)>>>);

#[async_trait::async_trait]
impl ChannelCallback for CloseRecorder {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        if let Ok(mut c) = self.0.lock() {
            *c = Some((close.reply_code(), close.reply_text().clone()));
        }
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, _: Ack) {}
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_of_a_close_frame_is_read_from_the_clients_message() {
        let m = r#"failed to open connection, reason: Close(MethodHeader { class_id: 10, method_id: 50 }, Close { reply_code: 530, reply_text: ShortStr(55, "NOT_ALLOWED - access to vhost 't1' refused for user 'u'"), class_id: 10, method_id: 40 })"#;
        assert_eq!(
            close_reply(m),
            Some((
                530,
                "NOT_ALLOWED - access to vhost 't1' refused for user 'u'".to_owned()
            ))
        );
        assert_eq!(close_reply("no frame here"), None);
    }
}
