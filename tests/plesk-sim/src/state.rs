//! The server's data: customers, their subscriptions, custom buttons, and what the server is
//! (version, protocols, credentials).

use std::collections::BTreeMap;

use crate::config::PleskConfig;

/// Customer status: active.
pub const STATUS_ACTIVE: u32 = 0;
/// Customer or subscription status: suspended by the administrator.
pub const STATUS_SUSPENDED: u32 = 16;

/// A customer account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Database id.
    pub id: u32,
    /// Login.
    pub login: String,
    /// Contact name.
    pub pname: String,
    /// E-mail address.
    pub email: String,
    /// 0 active, 16 suspended.
    pub status: u32,
    /// GUID.
    pub guid: String,
}

/// A subscription (webspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Database id.
    pub id: u32,
    /// Domain name.
    pub name: String,
    /// The owning customer's id.
    pub owner_id: u32,
    /// 0 active, 16 suspended.
    pub status: u32,
}

/// Who owns (may manage, sees) a custom button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// The administrator.
    Admin,
    /// A customer, by id.
    Customer(u32),
    /// A reseller, by id.
    Reseller(u32),
}

/// A custom button's properties, in the schema's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ButtonProps {
    /// Lower first.
    pub sort_key: Option<i64>,
    /// Tooltip.
    pub conhelp: Option<String>,
    /// Icon file path.
    pub file: Option<String>,
    /// Visible to the owner's sub-users.
    pub public: Option<bool>,
    /// Opens inside Plesk's frame.
    pub internal: Option<bool>,
    /// Extensions only.
    pub noframe: Option<bool>,
    /// Where it shows: `client`, `domain`, `navigation`, `admin`, …
    pub place: String,
    /// The URL opened.
    pub url: String,
    /// The label.
    pub text: String,
}

/// A custom button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// Database id.
    pub id: u32,
    /// Owner.
    pub owner: Owner,
    /// Properties.
    pub props: ButtonProps,
    /// The `url-components` flags set, in request order.
    pub url_components: Vec<String>,
}

/// Everything a simulated server holds.
#[derive(Debug, Clone)]
pub struct PleskState {
    /// `plesk_version`.
    pub plesk_version: String,
    /// Accepted protocol versions.
    pub protos: Vec<String>,
    /// Administrator login.
    pub admin_login: String,
    /// Administrator password.
    pub admin_password: String,
    /// Secret key for `KEY`.
    pub secret_key: Option<String>,
    /// Customers by id.
    pub customers: BTreeMap<u32, Customer>,
    /// Subscriptions by id.
    pub subscriptions: BTreeMap<u32, Subscription>,
    /// Custom buttons by id.
    pub buttons: BTreeMap<u32, Button>,
    next_customer: u32,
    next_subscription: u32,
    next_button: u32,
}

impl PleskState {
    /// The state a configuration starts with.
    pub fn new(config: &PleskConfig) -> Self {
        let mut state = PleskState {
            plesk_version: config.plesk_version.clone(),
            protos: config.protos.clone(),
            admin_login: config.admin_login.clone(),
            admin_password: config.admin_password.clone(),
            secret_key: config.secret_key.clone(),
            customers: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            buttons: BTreeMap::new(),
            next_customer: 1,
            next_subscription: 1,
            next_button: 1,
        };
        for seed in &config.customers {
            let id = state.add_customer(&seed.login);
            if seed.suspended {
                state
                    .customers
                    .entry(id)
                    .and_modify(|c| c.status = STATUS_SUSPENDED);
            }
            for domain in &seed.domains {
                state.add_subscription(id, domain);
            }
        }
        state
    }

    /// Adds a customer; returns its id (the existing one when the login is taken).
    pub fn add_customer(&mut self, login: &str) -> u32 {
        if let Some(id) = self.customer_id(login) {
            return id;
        }
        let id = self.next_customer;
        self.next_customer += 1;
        self.customers.insert(
            id,
            Customer {
                id,
                login: login.to_owned(),
                pname: format!("Customer {login}"),
                email: format!("{login}@example.test"),
                status: STATUS_ACTIVE,
                guid: format!("00000000-0000-4000-8000-{id:012x}"),
            },
        );
        id
    }

    /// Adds a subscription owned by customer `owner_id`; returns its id.
    pub fn add_subscription(&mut self, owner_id: u32, name: &str) -> u32 {
        let id = self.next_subscription;
        self.next_subscription += 1;
        self.subscriptions.insert(
            id,
            Subscription {
                id,
                name: name.to_owned(),
                owner_id,
                status: STATUS_ACTIVE,
            },
        );
        id
    }

    /// Adds a button; returns its id.
    pub fn add_button(&mut self, owner: Owner, props: ButtonProps, components: Vec<String>) -> u32 {
        let id = self.next_button;
        self.next_button += 1;
        self.buttons.insert(
            id,
            Button {
                id,
                owner,
                props,
                url_components: components,
            },
        );
        id
    }

    /// Removes a customer with its subscriptions and the buttons it owns.
    pub fn remove_customer(&mut self, login: &str) -> bool {
        let Some(id) = self.customer_id(login) else {
            return false;
        };
        self.customers.remove(&id);
        self.subscriptions.retain(|_, s| s.owner_id != id);
        self.buttons.retain(|_, b| b.owner != Owner::Customer(id));
        true
    }

    /// A customer's id by login.
    pub fn customer_id(&self, login: &str) -> Option<u32> {
        self.customers
            .values()
            .find(|c| c.login == login)
            .map(|c| c.id)
    }

    /// Whether an owner exists.
    pub fn owner_exists(&self, owner: Owner) -> bool {
        match owner {
            Owner::Admin => true,
            Owner::Customer(id) => self.customers.contains_key(&id),
            // The simulator has no resellers.
            Owner::Reseller(_) => false,
        }
    }

    /// The buttons a customer (by login) owns, by id.
    pub fn buttons_of(&self, login: &str) -> Vec<Button> {
        let Some(id) = self.customer_id(login) else {
            return Vec::new();
        };
        self.buttons
            .values()
            .filter(|b| b.owner == Owner::Customer(id))
            .cloned()
            .collect()
    }
}
