//! The integration suite: one binary, real PostgreSQL (a fresh database per test) and, where a test
//! needs it, a private throwaway PostgreSQL cluster. This file only declares the modules.

mod helpers;
mod idp;
mod stand_ins;

mod audit;
mod auth_cache;
mod bad_input;
mod bootstrap;
mod browser;
mod cli;
mod client;
mod cloud;
mod compose;
mod edge;
mod files;
mod follower;
mod health;
mod hostile;
mod isolation;
mod kv;
mod limits;
mod me;
mod nats;
mod openapi;
mod operability;
mod orgs;
mod outage;
mod plans;
mod proxy;
mod recovery;
mod registration;
mod replay;
mod shares;
mod storage;
mod ui;
mod users;
