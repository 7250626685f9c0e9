//! The loop's side of book sync: one request-response exchange per book
//! ([`Book::Offers`] on `/agora/offer-sync/2`, [`Book::Services`] on
//! `/agora/service-sync/1`), page after page, with the bytes [`Synced`] builds and reads.
//! Malformed requests and pages, and entries that do not verify, cost the peer
//! [`Offence::BadSync`].

use libp2p::PeerId;
use libp2p::request_response::{self, ResponseChannel};
use tracing::debug;

use super::NetworkLoop;
use crate::clock;
use crate::daemon::sync::{Book, MAX_SYNC_PAGES, Synced};
use crate::net::FrameCodec;
use crate::net::scoring::Offence;

impl NetworkLoop {
    /// Runs `f` on `book`, locked.
    fn with_book<R>(&self, book: Book, f: impl FnOnce(&mut dyn Synced) -> R) -> R {
        match book {
            Book::Offers => f(&mut *self.shared.market()),
            Book::Services => f(&mut *self.shared.services()),
        }
    }

    fn sync_behaviour(&mut self, book: Book) -> &mut request_response::Behaviour<FrameCodec> {
        let behaviour = self.swarm.behaviour_mut();
        match book {
            Book::Offers => &mut behaviour.sync,
            Book::Services => &mut behaviour.service_sync,
        }
    }

    /// Starts a catch-up round with `peer` for every book.
    pub(super) fn sync_round(&mut self, peer: PeerId) {
        for book in [Book::Offers, Book::Services] {
            self.request_sync(book, peer, None, 0);
        }
    }

    /// Asks `peer` for a page of `book`: `request` (a next-page request), or the first one.
    pub(super) fn request_sync(
        &mut self,
        book: Book,
        peer: PeerId,
        request: Option<Vec<u8>>,
        page: u32,
    ) {
        let Some(bytes) =
            request.or_else(|| self.with_book(book, |b| b.first_request(clock::now())))
        else {
            return;
        };
        let id = self.sync_behaviour(book).send_request(&peer, bytes);
        self.sync_requests.insert((book, id), (peer, page));
    }

    pub(super) fn on_sync(&mut self, book: Book, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.answer_sync(book, peer, &request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let page = self
                    .sync_requests
                    .remove(&(book, request_id))
                    .map_or(0, |(_, n)| n);
                self.on_sync_page(book, peer, &response, page);
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.sync_requests.remove(&(book, request_id));
                debug!(%peer, ?book, %error, "sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, ?book, %error, "sync answer failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer_sync(
        &mut self,
        book: Book,
        peer: PeerId,
        request: &[u8],
        channel: ResponseChannel<Vec<u8>>,
    ) {
        match self.with_book(book, |b| b.answer(request, clock::now())) {
            Ok(bytes) => {
                let _ = self.sync_behaviour(book).send_response(channel, bytes);
            }
            // Dropping the channel closes the stream: the peer gets no answer.
            Err(e) => {
                debug!(%peer, ?book, error = %e, "malformed sync request");
                self.penalise(peer, Offence::BadSync);
            }
        }
    }

    fn on_sync_page(&mut self, book: Book, peer: PeerId, bytes: &[u8], page: u32) {
        let now = clock::now();
        let applied = self.with_book(book, |b| {
            let applied = b.apply(bytes, now);
            match &applied {
                Err(_) => b.count("malformed"),
                Ok(a) => (0..a.bad).for_each(|_| b.count("bad_signature")),
            }
            applied
        });
        let applied = match applied {
            Ok(a) => a,
            Err(e) => {
                debug!(%peer, ?book, error = %e, "malformed sync page");
                self.penalise(peer, Offence::BadSync);
                return;
            }
        };
        if applied.bad > 0 {
            self.penalise(peer, Offence::BadSync);
        }
        debug!(%peer, ?book, page, accepted = applied.accepted, "sync page applied");
        if let Some(next) = applied.next
            && page + 1 < MAX_SYNC_PAGES
        {
            self.request_sync(book, peer, Some(next), page + 1);
        }
    }
}
