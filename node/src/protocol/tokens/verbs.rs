//! The token system's client verbs, as in the seed: `pay`, `gettokens`,
//! `transform`, and `tokenstatus` (a server's table).

use super::{Reply, Request, TokenId, Tokens};
use crate::cli::{Client, Output};
use crate::protocol::NodeId;
use std::fmt;

#[derive(clap::Subcommand, Debug)]
pub enum Verb {
    /// Pay a token this client owns to another client.
    Pay { token: TokenId, to: NodeId },
    /// The tokens an owner holds (default: this client).
    #[command(name = "gettokens")]
    GetTokens { owner: Option<NodeId> },
    /// Turn a server into a client or a client into a server (default: this node).
    Transform { node: Option<NodeId> },
    /// A server's table: every token's owner and version.
    #[command(name = "tokenstatus", alias = "token_status")]
    TokenStatus { server: NodeId },
}

impl fmt::Display for Reply {
    /// A reply in the seed's words, for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Paid { token, tag } => {
                write!(f, "paid token {token} at version {}", tag.version)
            }
            Reply::Tokens { owner, tokens } => {
                let list: Vec<String> = tokens.iter().map(|(t, v)| format!("{t} (v{v})")).collect();
                write!(f, "{owner} owns {} tokens: {}", list.len(), list.join(", "))
            }
            Reply::Transformed { role, config } => write!(
                f,
                "now a {role} (epoch {}, servers {})",
                config.epoch,
                config.servers.join(",")
            ),
            Reply::Failed { error } => write!(f, "{error}"),
            Reply::Unknown { reason } => write!(f, "{reason}"),
        }
    }
}

pub(super) async fn run(c: &Client<Tokens>, verb: Verb) -> anyhow::Result<Output> {
    match verb {
        Verb::Pay { token, to } => {
            c.known(&to)?;
            let op = c
                .op(
                    c.id(),
                    &Request::Pay {
                        token,
                        to: to.clone(),
                    },
                )
                .await?;
            Ok(Client::<Tokens>::render(&op, |r| match r {
                Reply::Paid { token, tag } => format!(
                    "paid: token {token} now belongs to {to} at version {}",
                    tag.version
                ),
                other => other.to_string(),
            }))
        }
        Verb::GetTokens { owner } => {
            let owner = owner.unwrap_or_else(|| c.id().to_string());
            c.known(&owner)?;
            let op = c.op(c.id(), &Request::GetTokens { owner }).await?;
            Ok(Client::<Tokens>::render(&op, Reply::to_string))
        }
        Verb::Transform { node } => {
            let node = node.unwrap_or_else(|| c.id().to_string());
            c.known(&node)?;
            let op = c.op(&node, &Request::Transform).await?;
            Ok(Client::<Tokens>::render(&op, |r| format!("{node} is {r}")))
        }
        Verb::TokenStatus { server } => {
            c.known(&server)?;
            let s = c.state(&server).await?;
            let Some(tokens) = s.state.tokens else {
                anyhow::bail!(
                    "{server} is a {} and holds no token table; ask a server",
                    s.role
                );
            };
            let human = tokens
                .iter()
                .map(|t| {
                    format!(
                        "token {}: owner {}, version {}",
                        t.token, t.owner, t.version
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output::ok(human, &tokens))
        }
    }
}
